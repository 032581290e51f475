from __future__ import annotations

import os

import pytest

from tests.capture import pulse

# The real-runtime OpenXR tests need Monado, which runs only inside the Debian 13 chroot: there
# tools/ci/openxr-runtime.sh sets VRCAP_IN_OPENXR_CHROOT=1; on the host, test_openxr.py runs them through it.
collect_ignore = [] if os.environ.get("VRCAP_IN_OPENXR_CHROOT") == "1" else ["test_openxr_runtime.py"]


@pytest.fixture(scope="session")
def pulse_server() -> str:
    """A running PulseAudio test server with the virtual microphone vsink.monitor; its PULSE_SERVER value.

    Session-scoped and set up before any test opens a device, so PortAudio sees ALSA's "pulse" device.
    """
    return pulse.pulse_server()
