"""A real microphone for tests: a private PulseAudio server whose null sink "vsink" we play into and whose
monitor "vsink.monitor" PortAudio records from, through ALSA's "pulse" device (tools/ci/pulseaudio.sh sets it up).

Where a tone lands in time, measured here (2-core Debian 12, PulseAudio 16.1, PortAudio 19.6 ALSA host API,
48 kHz mono, 480-frame blocks, ~60 runs):
- AudioSource maps the first loud sample of a tone started with ``paplay --device=vsink`` to −5..+3 ms of the
  moment ``paplay`` was spawned (intact tone starts: −4..−5.5 ms). FACTS.md says "onset ~12 ms after paplay
  started"; paplay's stream exists ~6 ms after the spawn (``pactl subscribe`` events).
- The ~10 ms between the two is the monitor's, not the fit's: the null sink renders when its timeline reaches
  "now", *up to its configured latency ahead* (10 ms while we record with PortAudio's "low" latency), and its
  monitor hands us each chunk when it is rendered. A chunk's last frame therefore reaches us one sink latency
  before its place on the sink's timeline, and the fit — a lower envelope through the earliest deliveries —
  sits that much before the timeline. A real microphone is the other way round (frames arrive after capture).
  ``expected_onset_ns`` subtracts the sink latency, read from PulseAudio during the recording.
- Often the first few ms of the tone never reach the monitor (a stream joining a running sink makes it rewind
  what it rendered ahead; the monitor had already passed that on): the tone then starts mid-phase and its first
  loud sample is a few ms late.
- Under heavy CPU load (two busy processes on two cores) paplay itself starts 10–40 ms late.

The server is shared by every test process on the machine: ``exclusive()`` serializes the tests that play into
vsink or unload it, so two pytest runs at once do not hear each other's tones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "tools" / "ci" / "pulseaudio.sh"
RATE = 48000
SINK = "vsink"
MONITOR = "vsink.monitor"
PAPLAY_ONSET_NS = 12_000_000  # paplay spawn → first sample on vsink's timeline (FACTS.md, module docstring)
LOCK_PATH = Path(os.environ.get("VRCAP_PULSE_DIR", "/tmp/vrcap-pulse")) / "tests.lock"
MISSING = (
    "PulseAudio not installed: apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"
)


def pulse_server() -> str:
    """Start (or find) the test PulseAudio server and point this process at it; returns PULSE_SERVER.

    Must run before sounddevice is imported: PortAudio enumerates ALSA devices once, at import, and ALSA's
    "pulse" device exists only if a server answered then. If sounddevice was imported already, PortAudio is
    re-initialized (sounddevice's documented way to re-scan devices).
    Missing PulseAudio fails the test in CI (where .ci/run installs it) and skips it elsewhere.
    """
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        skip_or_fail(MISSING)
    done = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"tools/ci/pulseaudio.sh failed ({done.returncode}): {done.stderr.strip()}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("PULSE_SERVER=")), "")
    if not line:
        pytest.fail(f"tools/ci/pulseaudio.sh printed no PULSE_SERVER line: {done.stdout!r}")
    server = line.split("=", 1)[1]
    os.environ["PULSE_SERVER"] = server
    os.environ["PULSE_SOURCE"] = MONITOR  # what ALSA's "pulse"/"default" devices record (already the default)
    if "sounddevice" in sys.modules:
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()
    return server


def ensure_feeder() -> None:
    """Re-run the idempotent set-up: restores vsink and its silent feeder if a test removed them."""
    done = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"tools/ci/pulseaudio.sh failed: {done.stderr.strip()}")


def pactl(*args: str) -> str:
    """Run pactl against the test server; returns stdout, raises on failure."""
    return subprocess.run(["pactl", *args], capture_output=True, text=True, check=True, timeout=10).stdout


def pacmd(*args: str) -> str:
    """Run pacmd (commands pactl lacks, e.g. kill-source-output) against the test server."""
    pulse_dir = Path(os.environ["PULSE_SERVER"].removeprefix("unix:")).parents[2]
    env = dict(os.environ, HOME=str(pulse_dir), XDG_RUNTIME_DIR=str(pulse_dir / "run"))
    return subprocess.run(
        ["pacmd", *args], capture_output=True, text=True, check=True, timeout=10, env=env
    ).stdout


def tone_wav(path: Path, freq: float, seconds: float, amplitude: float) -> None:
    """A mono 48 kHz int16 sine of ``amplitude`` (0..1 of full scale) starting at phase 0, no fade."""
    t = np.arange(round(seconds * RATE)) / RATE
    pcm = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())


def play_tone(freq: float, seconds: float, amplitude: float) -> int:
    """Play a tone into vsink and wait until it has played; returns the host monotonic ns of paplay's spawn.

    The tone's first sample reaches vsink about ``PAPLAY_ONSET_NS`` later. The WAV is written before the clock
    is read, so only process start-up and PulseAudio's scheduling separate the returned time from the onset.
    """
    ensure_feeder()
    with tempfile.TemporaryDirectory(prefix="vrcap-tone-") as tmp:
        wav = Path(tmp) / "tone.wav"
        tone_wav(wav, freq, seconds, amplitude)
        started = time.monotonic_ns()
        subprocess.run(["paplay", f"--device={SINK}", str(wav)], check=True, timeout=seconds + 10)
    return started


@contextlib.contextmanager
def exclusive(timeout_s: float = 300.0) -> Iterator[None]:
    """Hold the machine-wide lock on vsink: one test process at a time plays into it, records it, unloads it."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "w") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test process held {LOCK_PATH} for {timeout_s:g} s")
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sink_latency_ns() -> int:
    """vsink's configured latency now: how far ahead of its timeline it renders (depends on who records)."""
    text = pactl("list", "sinks")
    block = text[text.index(f"Name: {SINK}") :]
    found = re.search(r"Latency: \d+ usec, configured (\d+) usec", block)
    if found is None:
        raise RuntimeError(f"no configured latency for {SINK} in `pactl list sinks`")
    return int(found.group(1)) * 1000


def expected_onset_ns(played_ns: int, sink_latency: int) -> int:
    """Where AudioSource should place a tone's first sample: its place on vsink's timeline (paplay spawn +
    PAPLAY_ONSET_NS) minus how far ahead of that timeline the monitor delivered it (the sink's latency)."""
    return played_ns + PAPLAY_ONSET_NS - sink_latency
