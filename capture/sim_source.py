"""The simulator as capture sources, built from SimRig's functions of time.

Live recording uses three sources that behave like real devices: ``SimHeadset`` is polled by the engine's frame
clock, ``SimMicrophone`` and ``SimCamera`` run on their own threads and push samples when their time comes —
so a sim headset mixes freely with a real microphone or camera. ``SimPacketGenerator`` builds the same packets
without waiting (benchmarks, fixtures). Every value is a function of the frame or sample number, so both ways
give identical data; only the host timestamps differ.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from capture.engine import annotation_stream
from capture.sim import CONTROL_FIELDS, HAND_FIELDS, POSE_FIELDS, SimConfig, SimRig, SimText
from vrcap.packets import (
    POSE_ALL_VALID,
    S_COUNT,
    S_DATA,
    S_FRAME,
    S_INDEX,
    S_SOURCE_TIME,
    S_TIME,
    S_VALID,
    SAMPLES,
    SEQ,
    SOURCE_TIME,
    TIME,
)
from vrcap.streams import StreamDescriptor

STAGE = "stage: right-handed, +Y up, -Z forward, metres (OpenXR STAGE space)"
POSE_UNITS = (
    "position m; orientation unit quaternion xyzw; linear velocity m/s; angular velocity rad/s (stage)"
)
SIDES = ("left", "right")


# --- stream descriptors --------------------------------------------------------------------------------


def _pose(name: str, rate: float) -> StreamDescriptor:
    return StreamDescriptor(
        name,
        "pose",
        rate,
        (len(POSE_FIELDS),),
        "float32",
        "raw",
        POSE_UNITS,
        STAGE,
        POSE_FIELDS,
        "sim",
        "sim_ns",
    )


def headset_streams(config: SimConfig) -> list[StreamDescriptor]:
    rate = config.headset_rate_hz
    streams = [_pose("head", rate)] + [_pose(f"controller_{side}", rate) for side in SIDES]
    if config.tasks:
        streams.append(sim_text_stream())
    for side in SIDES:
        streams.append(
            StreamDescriptor(
                f"controls_{side}", "controls", rate, (len(CONTROL_FIELDS),), "float32", "raw",
                "trigger/squeeze 0..1; thumbstick -1..1; buttons 0 or 1", "", CONTROL_FIELDS, "sim", "sim_ns",
            )
        )  # fmt: skip
    if config.hands:
        for side in SIDES:
            streams.append(
                StreamDescriptor(
                    f"hand_{side}", "hand", rate, (26, len(HAND_FIELDS)), "float32", "raw",
                    "position m; orientation unit quaternion xyzw; radius m", STAGE, HAND_FIELDS, "sim", "sim_ns",
                    extra={"joints": "XR_EXT_hand_tracking order (26)"},
                )
            )  # fmt: skip
    return streams


def audio_stream(config: SimConfig) -> StreamDescriptor:
    return StreamDescriptor(
        "audio", "audio", float(config.audio_rate_hz), (-1, config.audio_channels), "int16", "pcm_s16le",
        "PCM, full scale 32767", "", (), "sim", "sample_index", extra={"block": config.audio_block},
    )  # fmt: skip


def camera_stream(config: SimConfig, cam: str, jpeg_quality: int) -> StreamDescriptor:
    return StreamDescriptor(
        f"camera_{cam}", "video", config.camera_fps, (config.camera_height, config.camera_width, 3),
        "uint8", "jpeg", "BGR 8-bit", "", (), "sim", "sim_ns", extra={"jpeg_quality": jpeg_quality},
    )  # fmt: skip


SIM_TEXT_STREAM = "sim_text"


def sim_text_stream() -> StreamDescriptor:
    """The sim's own instructions and transcripts: a text stream of their own, so their times never interleave
    with a user's annotations (each stream's samples must go forward in time; docs/FORMAT.md)."""
    return StreamDescriptor(SIM_TEXT_STREAM, "text", 0.0, (), "", "utf8", "", "", (), "sim", "sim_ns")


def sim_streams(config: SimConfig, jpeg_quality: int) -> list[StreamDescriptor]:
    streams = [*headset_streams(config), audio_stream(config)]
    return streams + [camera_stream(config, cam, jpeg_quality) for cam in config.cameras]


# --- samples -------------------------------------------------------------------------------------------


def headset_samples(rig: SimRig, hands: bool, st: int, mono: int) -> dict[str, list[dict[str, Any]]]:
    """Poses, controls and hands at sim time ``st`` ns, stamped ``mono``."""
    t = st / 1e9

    def pose(values: np.ndarray) -> dict[str, Any]:
        return {
            S_TIME: mono,
            S_SOURCE_TIME: st,
            S_DATA: values.astype("<f4").tobytes(),
            S_VALID: POSE_ALL_VALID,
        }

    samples = {"head": [pose(rig.head_pose(t))]}
    for side in SIDES:
        samples[f"controller_{side}"] = [pose(rig.controller_pose(side, t))]
        samples[f"controls_{side}"] = [
            {S_TIME: mono, S_SOURCE_TIME: st, S_DATA: rig.controls(side, t).astype("<f4").tobytes()}
        ]
        if hands:
            samples[f"hand_{side}"] = [pose(rig.hand_joints(side, t))]
    return samples


def audio_sample(rig: SimRig, index: int, block: int, rate: int, t0: int) -> tuple[dict[str, Any], float]:
    """Block starting at sample ``index``, and its RMS level in dBFS."""
    pcm = rig.audio_block(index, block)
    sample = {
        S_TIME: t0 + round(index * 1e9 / rate),
        S_SOURCE_TIME: index,
        S_INDEX: index,
        S_COUNT: block,
        S_DATA: pcm.astype("<i2").tobytes(),
    }
    rms = float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2)))
    return sample, 20 * float(np.log10(max(rms, 1e-3) / 32768.0))


class TextFeed:
    """Hands out the sim's text events (instructions, transcripts) once each, as their time comes.

    A frame takes every event at or before its sim time: none is lost when frames are skipped, and each sample
    is stamped with the event's own time, so replay puts it at the step it belongs to.
    """

    def __init__(self, rig: SimRig, transcripts: bool = True) -> None:
        self._rig, self._transcripts = rig, transcripts
        self._events: list[SimText] = []
        self._next = 0
        self._horizon_s = -math.inf

    def take(self, st: int, t0: int) -> list[dict[str, Any]]:
        """Samples of the events at or before sim time ``st`` ns not handed out yet; host time = t0 + sim time."""
        t = st / 1e9
        if t >= self._horizon_s:  # look ahead a minute at a time: text_events walks whole episodes
            self._horizon_s = t + 60.0
            done = self._events[: self._next]
            self._events = self._rig.text_events(self._horizon_s, self._transcripts)
            self._next = len(done)
        out = []
        while self._next < len(self._events) and self._events[self._next].t_s * 1e9 <= st:
            event = self._events[self._next]
            ns = round(event.t_s * 1e9)
            out.append(
                {
                    S_TIME: t0 + ns,
                    S_SOURCE_TIME: ns,
                    S_DATA: {"text": event.text, "kind": event.kind, "channel": event.channel},
                }
            )
            self._next += 1
        return out


class JpegEncoder:
    def __init__(self, quality: int) -> None:
        import cv2  # only recording needs OpenCV; importing it costs a few hundred ms

        self._cv2 = cv2
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]

    def __call__(self, image: np.ndarray) -> bytes:
        ok, data = self._cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a frame")
        return data.tobytes()


def camera_sample(rig: SimRig, cam: str, k: int, fps: float, t0: int, encode: JpegEncoder) -> dict[str, Any]:
    frame_ns = round(k * 1e9 / fps)
    return {
        S_TIME: t0 + frame_ns,
        S_SOURCE_TIME: frame_ns,
        S_FRAME: k,
        S_DATA: encode(rig.camera_frame(cam, k)),
    }


def sim_clock(t0: int) -> dict[str, Any]:
    return {"type": "offset", "mono_ns_at_zero": t0, "unit": "ns", "offset_ms": 0.0, "drift_ppm": 0.0}


def audio_clock(rate: int, t0: int) -> dict[str, Any]:
    """Sample index -> host ns for the sim microphone: sample i is at t0 + i / rate, no drift."""
    return {
        "type": "linear",
        "unit": "sample_index",
        "segments": [{"from_index": 0, "a_ns": float(t0), "b_ns": 1e9 / rate}],
        "offset_ms": 0.0,
        "drift_ppm": 0.0,
    }


# --- live sources --------------------------------------------------------------------------------------


class SimHeadset:
    """Frame source: the engine polls it at each frame of its clock; sim time zero is the engine's t0."""

    name = "sim"

    def __init__(self, config: SimConfig, *, transcripts: bool = True) -> None:
        self.config = config
        self.rate_hz = config.headset_rate_hz
        self.rig = SimRig(config)
        self.t0 = 0
        # Transcripts only when the sim microphone says them (a real microphone hears something else).
        self._text = TextFeed(self.rig, transcripts)

    def streams(self) -> list[StreamDescriptor]:
        return headset_streams(self.config)

    def open(self) -> None:
        for side in SIDES:  # one-time costs now, not as dropped frames at the start
            self.rig.hand_joints(side, 0.0)
        self._text.take(-1, 0)  # draws the first minute's text (takes nothing: no event is before time 0)

    def start(self, t0: int) -> None:
        self.t0 = t0

    def frame(self, seq: int, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        samples = headset_samples(self.rig, self.config.hands, t_ns - self.t0, t_ns)
        text = self._text.take(t_ns - self.t0, self.t0)
        if text:
            samples[SIM_TEXT_STREAM] = text
        return samples

    def close(self) -> None:
        pass

    def clock_info(self) -> dict[str, Any]:
        return sim_clock(self.t0)

    def live_stats(self) -> dict[str, Any]:
        return {}


class _SimPushSource:
    """A thread that delivers items when their time (relative to t0) comes, like a device would."""

    name = "sim"

    def __init__(self, clock: SimHeadset | None = None) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clock = clock  # sharing the sim headset's zero makes every sim stream one function of time
        self._t0 = 0

    @property
    def t0(self) -> int:
        """Sim time zero: the sim headset's, read when it is needed. The engine starts push sources before the
        frame clock (a device slow to start must not put frame 0 behind), so the headset's zero comes later."""
        return self._clock.t0 if self._clock is not None and not self._t0 else self._t0

    def open(self) -> None:
        pass

    def start(self, sink: Any, t0: int | None = None) -> None:
        if t0 is None and self._clock is None:
            t0 = time.monotonic_ns()
        self._t0 = t0 or 0
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name=f"vrcap-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _await_zero(self) -> bool:
        """Wait for the sim headset to start (the engine does so right after its push sources); False on stop."""
        while not self.t0:
            if self._stop.wait(0.001):
                return False
        return True

    def _sleep_until(self, due_ns: int) -> bool:
        """False when asked to stop."""
        delay = (due_ns - time.monotonic_ns()) / 1e9
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()

    def _run(self, sink: Any) -> None:
        raise NotImplementedError


class SimMicrophone(_SimPushSource):
    """Delivers audio blocks as a sound card would: each one as soon as its last sample has 'happened'."""

    def __init__(self, config: SimConfig, clock: SimHeadset | None = None) -> None:
        super().__init__(clock)
        self.config = config
        self.name = "audio"  # sources are named for their stream: session.json keys clocks by it
        self.rig = SimRig(config)
        self.level_dbfs = float("-inf")
        self.blocks = 0

    def streams(self) -> list[StreamDescriptor]:
        return [audio_stream(self.config)]

    def open(self) -> None:
        self.rig.prepare(5.0)  # the first words rendered now, not while the recording starts

    def _run(self, sink: Any) -> None:
        cfg = self.config
        index = 0
        while self._await_zero():
            due = self.t0 + round((index + cfg.audio_block) * 1e9 / cfg.audio_rate_hz)
            if not self._sleep_until(due):
                return
            sample, level = audio_sample(self.rig, index, cfg.audio_block, cfg.audio_rate_hz, self.t0)
            sink.put("audio", sample)
            self.level_dbfs = max(self.level_dbfs, level)
            self.blocks += 1
            index += cfg.audio_block

    def clock_info(self) -> dict[str, Any]:
        return audio_clock(self.config.audio_rate_hz, self.t0)

    def live_stats(self) -> dict[str, Any]:
        level, self.level_dbfs = self.level_dbfs, float("-inf")  # loudest block since the last look: a meter
        return {"level_dbfs": level, "blocks": self.blocks}


class SimCamera(_SimPushSource):
    """Renders and JPEG-encodes frames on its own thread at the camera's rate, as a USB camera would."""

    def __init__(
        self, config: SimConfig, cam: str, jpeg_quality: int, clock: SimHeadset | None = None
    ) -> None:
        super().__init__(clock)
        self.config = config
        self.cam = cam
        self.name = f"camera_{cam}"
        self.jpeg_quality = jpeg_quality
        self.rig = SimRig(config)
        self.encode: JpegEncoder | None = None
        self.frames = 0

    def streams(self) -> list[StreamDescriptor]:
        return [camera_stream(self.config, self.cam, self.jpeg_quality)]

    def open(self) -> None:
        self.encode = JpegEncoder(self.jpeg_quality)
        self.encode(self.rig.camera_frame(self.cam, 0))  # warm up the renderer and the codec

    def _run(self, sink: Any) -> None:
        assert self.encode is not None, "open() before start()"
        fps, k, stream = self.config.camera_fps, 0, f"camera_{self.cam}"
        while self._await_zero() and self._sleep_until(self.t0 + round(k * 1e9 / fps)):
            sink.put(stream, camera_sample(self.rig, self.cam, k, fps, self.t0, self.encode))
            self.frames += 1
            k += 1

    def clock_info(self) -> dict[str, Any]:
        return sim_clock(self.t0)

    def live_stats(self) -> dict[str, Any]:
        return {"frames": self.frames}


# --- offline ---------------------------------------------------------------------------------------------


class SimPacketGenerator:
    """Packet ``seq`` of a sim session on demand, without waiting: `record --offline`, benchmarks, fixtures.

    Packets must be asked for in increasing ``seq`` (audio blocks and camera frames are handed out once each).
    ``audio=False`` leaves the microphone out, as ``record.audio=none`` does live.
    """

    def __init__(
        self, config: SimConfig, jpeg_quality: int = 90, t0_ns: int = 0, *, audio: bool = True
    ) -> None:
        self.config = config
        self.rig = SimRig(config)
        self.t0_ns = t0_ns
        self.audio = audio
        self.encode = JpegEncoder(jpeg_quality)
        streams = sim_streams(config, jpeg_quality)
        # As in a live recording, whose engine always adds the annotations stream.
        self.streams = [s for s in streams if audio or s.kind != "audio"] + [annotation_stream()]
        self._next_audio = 0
        self._next_frame = 0
        self._text = TextFeed(self.rig, transcripts=audio)

    def offset_ns(self, seq: int) -> int:
        return round(seq * 1e9 / self.config.headset_rate_hz)

    def packet(self, seq: int) -> dict[str, Any]:
        cfg, st = self.config, self.offset_ns(seq)
        mono = self.t0_ns + st
        samples = headset_samples(self.rig, cfg.hands, st, mono)
        text = self._text.take(st, self.t0_ns)
        if text:
            samples[SIM_TEXT_STREAM] = text
        available = st * cfg.audio_rate_hz // 1_000_000_000
        while self.audio and self._next_audio + cfg.audio_block <= available:
            block, _ = audio_sample(
                self.rig, self._next_audio, cfg.audio_block, cfg.audio_rate_hz, self.t0_ns
            )
            samples.setdefault("audio", []).append(block)
            self._next_audio += cfg.audio_block
        while round(self._next_frame * 1e9 / cfg.camera_fps) <= st:
            for cam in cfg.cameras:
                sample = camera_sample(
                    self.rig, cam, self._next_frame, cfg.camera_fps, self.t0_ns, self.encode
                )
                samples.setdefault(f"camera_{cam}", []).append(sample)
            self._next_frame += 1
        return {SEQ: seq, TIME: mono, SOURCE_TIME: st, SAMPLES: samples}
