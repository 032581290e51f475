"""Lab Streaming Layer for tests, on loopback only: an lsl_api.cfg that keeps liblsl on 127.0.0.1, machine scope.

The config must be in place before liblsl first reads it (at the first pylsl call of a process), so
``lsl_env()`` writes it, points ``LSLAPICFG`` at it for this process and every `vrcap` it starts, and only
then imports pylsl. A unique SessionID keeps two test runs on one machine from seeing each other's streams.
pylsl missing fails in CI (it is in the dev extra) and skips elsewhere.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import in_ci

CONFIG = """[ports]
IPv6 = disable
[multicast]
ResolveScope = machine
AddressesOverride = {{127.0.0.1}}
Interfaces = {{127.0.0.1}}
ListenAddress = 127.0.0.1
[lab]
KnownPeers = {{127.0.0.1}}
SessionID = {session}
[log]
level = -2
"""


def lsl_env() -> Any:
    """pylsl, configured for loopback (idempotent within a process)."""
    if "LSLAPICFG" not in os.environ or "vrcap-test" not in Path(os.environ["LSLAPICFG"]).read_text():
        folder = Path(tempfile.mkdtemp(prefix="vrcap-lsl-"))
        path = folder / "lsl_api.cfg"
        path.write_text(CONFIG.format(session=f"vrcap-test-{uuid.uuid4().hex[:12]}"))
        os.environ["LSLAPICFG"] = str(path)
    try:
        import pylsl
    except ImportError as exc:
        message = f"pylsl is not installed ({exc}): pip install -e '.[dev]'"
        if in_ci():
            pytest.fail(f"{message} (CI must have it)")
        pytest.skip(message)
    return pylsl
