"""The microphone source against a real PulseAudio server (tests/capture/pulse.py), and its clock fit.

Sound goes: numpy tone → WAV → ``paplay --device=vsink`` → null sink → vsink.monitor → ALSA "pulse" device →
PortAudio → AudioSource → list sink. Nothing is mocked; the clock fit alone is also checked on synthetic data
whose truth is known.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from capture.audio import AudioConfig, AudioSource, list_microphones
from capture.clockfit import LinearClockFit
from tests.capture import pulse
from tests.helpers import wait_for
from vrcap.errors import CaptureError

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

RATE = 48000
BLOCK = 480
TONE_HZ = 997.0
TONE_AMPLITUDE = 0.5
ONSET_TOLERANCE_NS = 20_000_000


@dataclass
class ListSink:
    """A SampleSink that keeps everything, with the host time of each put (thread-safe like the engine's)."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    put_times: list[int] = field(default_factory=list)
    drops: int = 0
    incidents: list[tuple[int, str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, stream: str, sample: dict[str, Any]) -> None:
        with self.lock:
            self.blocks.append(sample)
            self.put_times.append(time.monotonic_ns())

    def drop(self, stream: str, count: int = 1) -> None:
        with self.lock:
            self.drops += count

    def incident(self, stream: str, kind: str, message: str) -> None:
        with self.lock:
            self.incidents.append((time.monotonic_ns(), stream, kind, message))

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(b["d"] for b in self.blocks), dtype="<i2")


@dataclass
class Recording:
    sink: ListSink
    clock: dict[str, Any]
    stats: dict[str, Any]
    level_during_tone: float
    played_ns: int
    sink_latency_ns: int


@pytest.fixture(scope="module", autouse=True)
def vsink_to_ourselves(pulse_server: str) -> Iterator[None]:
    """Other pytest processes on this machine use the same PulseAudio server: take turns."""
    with pulse.exclusive():
        yield


def mic_config(**overrides: Any) -> AudioConfig:
    return AudioConfig(device="pulse", rate_hz=RATE, channels=1, block=BLOCK, **overrides)


def map_stored(clock: dict[str, Any], index: int) -> float:
    """Host ns of ``index`` by the stored segments, as replay would compute it from session.json."""
    seg = [s for s in clock["segments"] if s["from_index"] <= index][-1]
    return seg["a_ns"] + seg["b_ns"] * index


def _onset_index(recording: Recording) -> int:
    pcm = recording.sink.pcm()
    loud = np.flatnonzero(np.abs(pcm) > 0.2 * TONE_AMPLITUDE * 32767)
    return int(loud[0]) + recording.sink.blocks[0]["i"] if loud.size else -1


def _onset_error_ns(recording: Recording) -> float:
    onset = _onset_index(recording)
    if onset < 0:
        return float("inf")
    expected = pulse.expected_onset_ns(recording.played_ns, recording.sink_latency_ns)
    return map_stored(recording.clock, onset) - expected


@pytest.fixture(scope="module")
def recording(vsink_to_ourselves: None) -> Recording:
    """A tone recording; measured twice at most when the first reads outside the tolerance.

    The reference is when `paplay` was spawned, and on a loaded CI machine paplay itself can start tens of ms
    late (seen: +31 ms once in a full CI run, with vrcap's mapping unchanged), so one retry separates a
    late-starting player from a wrong clock: a clock error shows in both attempts.
    """
    attempts = []
    for _ in range(2):
        attempts.append(_record_tone())
        print(f"onset error attempt {len(attempts)}: {_onset_error_ns(attempts[-1]) / 1e6:+.2f} ms")
        if abs(_onset_error_ns(attempts[-1])) <= ONSET_TOLERANCE_NS:
            break
    return attempts[-1]


def _record_tone() -> Recording:
    """~4 s of vsink.monitor with a 0.6 s tone played after a 2.5 s warm-up (FACTS: timing settles by then)."""
    pulse.ensure_feeder()
    sink = ListSink()
    levels: list[float] = []
    with AudioSource(mic_config()) as mic:
        mic.start(sink)
        wait_for(lambda: sink.blocks, 5.0, "the first audio block")  # may take ~1.5 s after start
        time.sleep(2.5)
        probe = threading.Timer(0.35, lambda: levels.append(mic.live_stats()["level_dbfs"]))
        probe.start()  # reads the level meter while the tone plays
        played = pulse.play_tone(TONE_HZ, 0.6, TONE_AMPLITUDE)
        probe.join()
        latency = pulse.sink_latency_ns()  # while we record: our stream sets it
        time.sleep(0.5)
        mic.stop()
        return Recording(sink, mic.clock_info(), mic.live_stats(), levels[0], played, latency)


def test_tone_onset_maps_to_when_it_was_played(recording: Recording) -> None:
    pcm = recording.sink.pcm()
    first_index = recording.sink.blocks[0]["i"]
    loud = np.flatnonzero(np.abs(pcm) > 0.2 * TONE_AMPLITUDE * 32767)
    assert loud.size > 0.5 * RATE, "the tone did not come back through vsink.monitor"
    onset = int(loud[0]) + first_index
    sound = np.flatnonzero(pcm)
    # Silence (the /dev/zero feeder) until the tone, whose first samples may be below the threshold.
    assert 0 <= loud[0] - sound[0] < RATE // TONE_HZ, (
        f"sound at {sound[0]}, long before the tone at {loud[0]}"
    )
    peak = np.abs(pcm).max() / 32767
    assert peak == pytest.approx(TONE_AMPLITUDE, abs=0.01)

    onset_ns = map_stored(recording.clock, onset)
    expected_ns = pulse.expected_onset_ns(recording.played_ns, recording.sink_latency_ns)
    error_ns = onset_ns - expected_ns
    print(
        f"\nonset: {(onset_ns - recording.played_ns) / 1e6:+.2f} ms from the paplay spawn; expected "
        f"{(expected_ns - recording.played_ns) / 1e6:+.2f} ms ({pulse.PAPLAY_ONSET_NS / 1e6:.0f} ms onset − "
        f"{recording.sink_latency_ns / 1e6:.0f} ms sink latency); error {error_ns / 1e6:+.2f} ms; "
        f"drift {recording.clock['drift_ppm']:+.1f} ppm; segments {len(recording.clock['segments'])}"
    )
    assert abs(error_ns) <= ONSET_TOLERANCE_NS
    assert recording.level_during_tone == pytest.approx(
        20 * math.log10(TONE_AMPLITUDE / math.sqrt(2)), abs=0.5
    )


def test_blocks_are_contiguous_and_timestamps_monotonic(recording: Recording) -> None:
    blocks = recording.sink.blocks
    assert len(blocks) > 3.0 * RATE / BLOCK
    index = np.array([b["i"] for b in blocks])
    count = np.array([b["n"] for b in blocks])
    t = np.array([b["t"] for b in blocks])
    assert index[0] == 0
    assert np.array_equal(index[1:], index[:-1] + count[:-1]), "a gap in the sample index"
    assert np.all(count[:-1] == BLOCK) and 0 < count[-1] <= BLOCK
    assert all(b["st"] == b["i"] and len(b["d"]) == 2 * b["n"] for b in blocks)
    assert np.all(np.diff(t) > 0)
    # Past the first second each block starts about one block (10 ms) after the previous one. In the first
    # blocks the fit is still settling: PulseAudio hands over its backlog in a burst, and a block timed from a
    # late first callback is followed by one whose earlier callback lowers the line (spacing down to ~0.1 ms).
    step = np.diff(t[index >= RATE])
    assert np.all(np.abs(step - BLOCK * 1e9 / RATE) < 0.5 * BLOCK * 1e9 / RATE)
    # The stored fit, which replay uses, is settled: it spaces every block by the same fitted step.
    stored = np.array([map_stored(recording.clock, int(i)) for i in index])
    assert np.allclose(np.diff(stored), recording.clock["segments"][0]["b_ns"] * count[:-1], atol=1)
    assert recording.sink.incidents == [] and recording.sink.drops == 0
    assert recording.stats["frames"] == int(count.sum()) and recording.stats["overflows"] == 0
    assert recording.stats["level_dbfs"] == float("-inf")  # the last 100 ms were the feeder's zeros


# -- the clock fit alone ---------------------------------------------------------------------------------------


def synthetic_observations(
    seconds: float, drift_ppm: float, first_index: int, t0_ns: int, seed: int = 7
) -> tuple[list[tuple[int, int]], float]:
    """Callback observations shaped like PulseAudio's (FACTS.md and capture/clockfit.py's docstring).

    Blocks of 480 frames delivered in pairs (a 960-frame period), each callback late by a floor that wanders
    between 0 and 8 ms over seconds, plus exponential jitter (mean 2 ms) and a 1% chance of a 10–40 ms stall.
    Returns the (block end index, callback ns) pairs and the true ns per frame.
    """
    rng = np.random.default_rng(seed)
    b_true = 1e9 / RATE * (1 + drift_ppm * 1e-6)
    out = []
    for k in range(1, int(seconds * RATE / BLOCK)):
        end = first_index + k * BLOCK
        true_ns = t0_ns + b_true * (end - first_index)
        elapsed = k * BLOCK / RATE
        floor = 4e6 * (1 + math.sin(2 * math.pi * elapsed / 7.3))
        pair = b_true * BLOCK if k % 2 else 0.0  # the first of a pair waits for the second
        stall = rng.uniform(10e6, 40e6) if rng.random() < 0.01 else 0.0
        out.append((end, round(true_ns + floor + pair + rng.exponential(2e6) + stall)))
    return out, b_true


def test_clock_fit_recovers_drift_and_maps_within_half_a_millisecond() -> None:
    first_index, t0 = 10_000_000_000, 9_000_000_000_000  # a long recording: 2.4 days in, host up 2.5 hours
    observations, b_true = synthetic_observations(150.0, 100.0, first_index, t0)
    fit = LinearClockFit(RATE)
    early, settled = [], []  # live mapping error of each new block's first frame, ns
    for index, t_ns in observations:
        fit.observe(index, t_ns)
        start = index - BLOCK
        elapsed_s = (index - first_index) / RATE
        error = fit.map(start) - (t0 + b_true * (start - first_index))
        if 5.0 < elapsed_s < 20.0:  # nominal slope: costs up to drift × 20 s = 2 ms
            early.append(error)
        elif elapsed_s > 25.0:  # the envelope's slope, from min_span_s (20 s) on
            settled.append(error)
    worst_ms, worst_early_ms = np.max(np.abs(settled)) / 1e6, np.max(np.abs(early)) / 1e6
    print(
        f"\nsynthetic: drift {fit.drift_ppm:.2f} ppm (true 100); worst live mapping error {worst_ms:.3f} ms "
        f"after 25 s, {worst_early_ms:.3f} ms in 5..20 s (nominal slope)"
    )
    assert fit.drift_ppm == pytest.approx(100.0, abs=5.0)
    assert worst_ms < 0.5
    assert worst_early_ms < 2.5
    [segment] = fit.segments()
    assert segment["observations"] == len(observations)
    assert segment["b_ns"] == pytest.approx(b_true, rel=5e-6)
    # The stored form maps like the live one, even at index 1e10 (a_ns is ~ -2e14 there).
    last = observations[-1][0]
    assert segment["a_ns"] + segment["b_ns"] * last == pytest.approx(fit.map(last), abs=1000)


def test_clock_fit_uses_nominal_rate_until_it_has_seen_enough() -> None:
    fit = LinearClockFit(RATE)
    with pytest.raises(RuntimeError, match="no observation"):
        fit.map(0)
    observations, _ = synthetic_observations(5.0, 300.0, 0, 1_000_000_000)
    for index, t_ns in observations:
        fit.observe(index, t_ns)
    assert fit.b_ns == 1e9 / RATE and fit.drift_ppm == 0.0
    # The line touches the earliest observation: none lies below it.
    assert min(t - fit.map(i) for i, t in observations) == pytest.approx(0, abs=2)


def test_clock_fit_restart_opens_a_new_segment() -> None:
    fit = LinearClockFit(RATE)
    before, _ = synthetic_observations(30.0, -50.0, 0, 1_000_000_000)
    for index, t_ns in before:
        fit.observe(index, t_ns)
    resume = before[-1][0] + BLOCK
    fit.restart(resume)
    # The device came back 250 ms later than its frame count says (frames lost in an overflow, uncounted).
    after, _ = synthetic_observations(12.0, -50.0, resume, round(fit.map(resume)) + 250_000_000)
    for index, t_ns in after:
        fit.observe(index, t_ns)
    first, second = fit.segments()
    assert (first["from_index"], second["from_index"]) == (0, resume)
    assert (first["observations"], second["observations"]) == (len(before), len(after))
    assert first["b_ns"] == pytest.approx(1e9 / RATE * (1 - 50e-6), rel=10e-6)
    # Each segment maps its own indices: 250 ms apart across the restart, not smeared over both.
    assert fit.map(resume) - map_stored({"segments": [first]}, resume) == pytest.approx(250e6, abs=1e6)
    assert fit.offset_ns == pytest.approx(250e6, abs=2e6)


# -- failures ---------------------------------------------------------------------------------------------


def test_missing_device_names_it_and_how_to_list_devices(pulse_server: str) -> None:
    for device in ("no-such-microphone-xyz", 999):
        with pytest.raises(CaptureError) as caught:
            AudioSource(AudioConfig(device=device)).open()
        message = str(caught.value)
        assert repr(device) in message and "vrcap devices" in message and "\n" not in message
    names = [m["name"] for m in list_microphones()]
    assert "pulse" in names


def test_config_rejects_bad_values_with_the_fix() -> None:
    with pytest.raises(ValueError, match="480 is 10 ms at 48 kHz"):
        AudioConfig(block=0)
    with pytest.raises(ValueError, match="use 1 \\(mono\\) or 2"):
        AudioConfig(channels=0)


class SlowSink(ListSink):
    """Blocks the drain thread once, for longer than the ring holds: the callback must drop, count and say so."""

    def put(self, stream: str, sample: dict[str, Any]) -> None:
        super().put(stream, sample)
        if len(self.blocks) == 100:  # 1 s in: past the fit's start-up settling
            time.sleep(0.4)


def test_frames_lost_in_a_full_ring_show_as_a_counted_jump(pulse_server: str) -> None:
    sink = SlowSink()
    with AudioSource(mic_config(ring_seconds=0.1)) as mic:  # 4800 frames: a 0.4 s stall overfills it
        mic.start(sink)
        wait_for(lambda: len(sink.blocks) > 140, 8.0, "blocks after the stall")
        mic.stop()
        stats = mic.live_stats()
    index = np.array([b["i"] for b in sink.blocks])
    count = np.array([b["n"] for b in sink.blocks])
    t = np.array([b["t"] for b in sink.blocks])
    jumps = index[1:] - (index[:-1] + count[:-1])
    assert np.all(jumps >= 0)
    gaps = np.flatnonzero(jumps)
    print(f"\nring overflow: {sink.drops} frames dropped in {len(gaps)} gap(s)")
    assert sink.drops > 0.2 * RATE and int(jumps.sum()) == sink.drops
    assert [kind for _, _, kind, _ in sink.incidents] == ["overflow"] * len(gaps)
    assert all("drain thread fell behind" in message for *_, message in sink.incidents)
    assert stats["overflows"] == len(gaps)
    # The device clock went on through the gap, so time jumps by the frames skipped, as the fit says.
    step_ns = 1e9 / RATE
    for k in gaps:
        assert t[k + 1] - t[k] == pytest.approx((index[k + 1] - index[k]) * step_ns, abs=2e6)


@dataclass
class OverflowStatus:
    input_overflow: bool = True


class OverflowOnce(AudioSource):
    """The real device, with PortAudio's input-overflow flag raised on the 30th callback (PulseAudio buffers
    rather than overflowing, so a real one cannot be provoked here)."""

    callbacks = 0

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self.callbacks += 1
        super()._callback(indata, frames, time_info, OverflowStatus() if self.callbacks == 30 else status)


def test_portaudio_overflow_restarts_the_clock_fit(pulse_server: str) -> None:
    sink = ListSink()
    with OverflowOnce(mic_config()) as mic:
        mic.start(sink)
        wait_for(lambda: len(sink.blocks) > 50, 8.0, "50 blocks")
        mic.stop()
        clock, stats = mic.clock_info(), mic.live_stats()
    assert [kind for _, _, kind, _ in sink.incidents] == ["overflow"]
    assert "overflow before index 13920" in sink.incidents[0][3]  # the 30th block starts at 29 × 480
    assert [s["from_index"] for s in clock["segments"]] == [0, 13920]
    assert clock["segments"][0]["observations"] == 29 and clock["segments"][1]["observations"] > 20
    index = [b["i"] for b in sink.blocks]
    assert index[:50] == list(range(0, 50 * BLOCK, BLOCK))  # PortAudio did not say how many were lost: none
    assert stats["overflows"] == 1 and sink.drops == 0


def drain_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vrcap-") and t.name.endswith("-drain")]


def record_until_device_error(break_device: Any) -> tuple[ListSink, float]:
    """Record, run ``break_device()`` once audio flows, wait for the device-error; returns the sink, stop() time."""
    sink = ListSink()
    mic = AudioSource(mic_config())
    try:
        mic.open()
        mic.start(sink)
        wait_for(lambda: mic.live_stats()["frames"] > 0, 5.0, "the first audio block")
        break_device()
        wait_for(lambda: sink.incidents, 5.0, "a device-error incident")
        wait_for(lambda: not drain_threads(), 2.0, "the drain thread to end after the device error")
        delivered = len(sink.blocks)
        time.sleep(0.2)
        assert len(sink.blocks) == delivered, "blocks kept coming after the device-error"
    finally:
        begun = time.monotonic()
        mic.stop()
        stop_s = time.monotonic() - begun
        pulse.ensure_feeder()  # put vsink and its feeder back for the tests that follow
    return sink, stop_s


def test_unloading_the_sink_mid_recording_is_one_device_error(pulse_server: str) -> None:
    """The null sink's module vanishes. PulseAudio moves our stream to auto_null.monitor, but ALSA's pulse plugin
    passes nothing more to PortAudio (a native client such as parec goes on): callbacks stop, the watchdog says so."""

    def unload() -> None:
        modules = pulse.pactl("list", "short", "modules").splitlines()
        [module] = [line.split()[0] for line in modules if "sink_name=vsink" in line]
        pulse.pactl("unload-module", module)

    sink, stop_s = record_until_device_error(unload)
    assert [kind for _, _, kind, _ in sink.incidents] == ["device-error"]
    assert "'pulse'" in sink.incidents[0][3] and "no audio for" in sink.incidents[0][3]
    assert stop_s < 2.0


def test_killed_stream_mid_recording_is_one_device_error(pulse_server: str) -> None:
    """The server kills our recording stream: PortAudio ends it (finished callback) with an ALSA error."""

    def kill() -> None:
        monitor = next(
            line.split()[0]
            for line in pulse.pactl("list", "short", "sources").splitlines()
            if line.split()[1] == pulse.MONITOR
        )
        outputs = pulse.pactl("list", "short", "source-outputs").splitlines()
        [ours] = [line.split()[0] for line in outputs if line.split()[1] == monitor]
        pulse.pacmd("kill-source-output", ours)

    sink, stop_s = record_until_device_error(kill)
    assert [kind for _, _, kind, _ in sink.incidents] == ["device-error"]
    assert "PortAudio ended the stream" in sink.incidents[0][3]
    assert stop_s < 2.0


def test_stop_is_idempotent_and_leaves_no_threads(pulse_server: str) -> None:
    before = set(threading.enumerate())
    for _ in range(3):
        sink = ListSink()
        mic = AudioSource(mic_config())
        mic.open()
        mic.start(sink)
        wait_for(lambda s=sink: len(s.blocks) >= 5, 5.0, "five blocks")
        mic.stop()
        mic.stop()
        assert sink.incidents == []
        assert [b["i"] for b in sink.blocks[:5]] == [0, 480, 960, 1440, 1920]
    assert set(threading.enumerate()) == before
    AudioSource(mic_config()).stop()  # never opened: nothing to release, no error
