"""Small builders shared by tests: synthetic sessions whose content is known exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from vrcap.streams import StreamDescriptor
from vrcap.writer import SessionWriter, WriterConfig

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def in_ci() -> bool:
    """CI is on when $CI says so ("true", "1", "yes"); "false", "0" and "" are not CI (GitHub sets "true")."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def skip_or_fail(reason: str) -> None:
    """A real part missing here: skip on a developer's machine, fail in CI (where .ci/run installs it)."""
    import pytest

    if in_ci():
        pytest.fail(f"{reason} (CI must have it: see .ci/run)")
    pytest.skip(reason, allow_module_level=True)  # also from a module's top, as importorskip does


def require_module(name: str, hint: str) -> Any:
    """``pytest.importorskip`` that fails instead of skipping in CI."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(f"{name} is not importable; {hint}")


def pytest_counts(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line ("3 passed, 1 skipped in 2.1s" -> {"passed": 3, ...})."""
    import re

    lines = [
        line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b", line)
    ]
    if not lines:
        return {}
    found = re.findall(
        r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)", lines[-1]
    )
    return {kind.rstrip("s") if kind.startswith(("error", "warning")) else kind: int(n) for n, kind in found}


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds, else None. Written once for all tests."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Like ``poll``, but a timeout fails the test, naming what it waited for."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


T0 = 1_000_000_000_000
PERIOD = 11_111_111  # 90 Hz

STREAMS = [
    StreamDescriptor("head", "pose", 90.0, (13,), "float32", "raw"),
    StreamDescriptor("audio", "audio", 48000.0, (-1, 1), "int16", "pcm_s16le"),
]


def synthetic_packet(seq: int, payload_bytes: int = 0) -> dict[str, Any]:
    """Packet ``seq`` of a synthetic session: head pose = seq + field index, 533 audio frames of seq."""
    head = (np.arange(13, dtype=np.float32) + seq).tobytes()
    audio = np.full(533, seq % 30000, dtype=np.int16).tobytes()
    packet: dict[str, Any] = {
        "seq": seq,
        "t": T0 + seq * PERIOD,
        "s": {
            "head": [{"t": T0 + seq * PERIOD, "d": head, "v": 0x3F}],
            "audio": [{"t": T0 + seq * PERIOD, "i": seq * 533, "n": 533, "d": audio}],
        },
    }
    if payload_bytes:
        packet["blob"] = os.urandom(payload_bytes)
    return packet


def write_synthetic(path: Path, n: int, config: WriterConfig | None = None, **kw: Any) -> Path:
    with SessionWriter.create(path, STREAMS, config=config or WriterConfig(fsync=False), **kw) as w:
        for seq in range(n):
            w.write_packet(synthetic_packet(seq))
    return path


def run_vrcap(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed command, in a subprocess: what a user types, exit code and all."""
    full_env = dict(os.environ, **(env or {}))
    script = Path(sys.executable).parent / "vrcap"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "vrcap.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(REPO),
    )
