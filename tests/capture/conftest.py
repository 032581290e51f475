from __future__ import annotations

import pytest

from tests.capture import pulse


@pytest.fixture(scope="session")
def pulse_server() -> str:
    """A running PulseAudio test server with the virtual microphone vsink.monitor; its PULSE_SERVER value.

    Session-scoped and set up before any test opens a device, so PortAudio sees ALSA's "pulse" device.
    """
    return pulse.pulse_server()
