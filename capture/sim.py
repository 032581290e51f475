"""A deterministic virtual VR rig: every pose, input, hand joint, audio sample and pixel is a function of time.

Why: the recorder, the session format and the replay tools need ground truth to be tested against, on machines
with no headset. ``SimRig`` answers "what did the hardware report at time t?" exactly, with no I/O, no wall clock
and no unseeded randomness: the same config gives bit-identical outputs, another ``seed`` other trajectories.
Audio events and button presses do not depend on the seed, so tests can hard-code their times.

Split by concern, re-exported here:

    sim_motion.py   head, controllers, controller inputs, hand skeletons (POSE_FIELDS, HAND_JOINTS, ...)
    sim_media.py    microphone audio with known events; camera frames with a frame-number barcode
    sim.py          SimConfig (+ SimConfigError) and the SimRig facade
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

import numpy as np

from capture.sim_media import (
    AUDIO_AMPLITUDE,
    BARCODE_BITS,
    CHIRP_DURATION_MS,
    CHIRP_END_HZ,
    CHIRP_FIRST_MS,
    CHIRP_PERIOD_MS,
    CHIRP_START_HZ,
    MAX_FRAME_NUMBER,
    MIN_CAMERA_WIDTH,
    TONE_DURATION_MS,
    TONE_FIRST_MS,
    TONE_FREQS_HZ,
    TONE_PERIOD_MS,
    AudioEvent,
    AudioSynth,
    CameraRenderer,
    decode_frame_number,
    draw_frame_overlay,
    min_camera_height,
)
from capture.sim_motion import (
    BUTTON_SCHEDULES,
    CONTROL_FIELDS,
    HAND_FIELDS,
    HAND_JOINTS,
    POSE_FIELDS,
    SIDES,
    ButtonSchedule,
    RigMotion,
)

__all__ = [
    "AUDIO_AMPLITUDE",
    "BARCODE_BITS",
    "BUTTON_SCHEDULES",
    "CHIRP_DURATION_MS",
    "CHIRP_END_HZ",
    "CHIRP_FIRST_MS",
    "CHIRP_PERIOD_MS",
    "CHIRP_START_HZ",
    "CONTROL_FIELDS",
    "HAND_FIELDS",
    "HAND_JOINTS",
    "MAX_FRAME_NUMBER",
    "MIN_AUDIO_RATE_HZ",
    "MIN_CAMERA_WIDTH",
    "POSE_FIELDS",
    "SIDES",
    "TONE_DURATION_MS",
    "TONE_FIRST_MS",
    "TONE_FREQS_HZ",
    "TONE_PERIOD_MS",
    "AudioEvent",
    "ButtonSchedule",
    "SimConfig",
    "SimConfigError",
    "SimRig",
    "decode_frame_number",
    "draw_frame_overlay",
]

MIN_AUDIO_RATE_HZ = 16000  # the chirp reaches 4 kHz; below 16 kHz it would sit too close to Nyquist
_CAMERA_NAME = re.compile(r"[a-z0-9_]+")


class SimConfigError(ValueError):
    """A SimConfig value that cannot work; the message names the field and a value that would."""


@dataclass
class SimConfig:
    """The virtual rig: which devices it has and how fast they report."""

    headset_rate_hz: float = 90.0  # frame clock of the virtual headset (poses, controls, hands)
    hands: bool = True  # whether the rig reports hand tracking, 26 joints per hand (XR_EXT_hand_tracking)
    audio_rate_hz: int = 48000  # microphone sample rate
    audio_channels: int = 1  # channel c carries the mono signal scaled by 0.8**c
    audio_block: int = 480  # samples per block the virtual microphone delivers (480 = 10 ms at 48 kHz)
    cameras: tuple[str, ...] = ("left", "right")  # "left"/"right" form a stereo pair; names are [a-z0-9_]+
    camera_width: int = 640  # pixels; >= 320 so the frame-number barcode stays readable
    camera_height: int = 480  # pixels; >= camera_width / 8 (barcode plus text line)
    camera_fps: float = 30.0  # frame k is at t = k / camera_fps
    seed: int = 0  # picks the trajectory phases; the same seed gives bit-identical outputs

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)  # YAML and the CLI give lists
        _check_rate("headset_rate_hz", self.headset_rate_hz, "e.g. 90 (Quest 2) or 72")
        _check_rate("camera_fps", self.camera_fps, "e.g. 30")
        if not isinstance(self.hands, bool):
            raise SimConfigError(f"SimConfig.hands must be true or false, got {self.hands!r}")
        _check_int("audio_rate_hz", self.audio_rate_hz, MIN_AUDIO_RATE_HZ, "use 48000 or 44100")
        _check_int("audio_channels", self.audio_channels, 1, "use 1 for a mono microphone")
        _check_int("audio_block", self.audio_block, 1, "use 480 for 10 ms blocks at 48 kHz")
        _check_int("seed", self.seed, 0, "any non-negative integer, e.g. 0")
        for name in self.cameras:
            if not isinstance(name, str) or not _CAMERA_NAME.fullmatch(name):
                raise SimConfigError(
                    f"SimConfig.cameras has the name {name!r}; camera names must be non-empty and use only "
                    "a-z, 0-9 and '_', e.g. cameras: [left, right]"
                )
        if len(set(self.cameras)) != len(self.cameras):
            raise SimConfigError(
                f"SimConfig.cameras lists a camera twice: {list(self.cameras)}; name each once"
            )
        _check_int(
            "camera_width",
            self.camera_width,
            MIN_CAMERA_WIDTH,
            "narrower frames cannot hold the barcode; use 640",
        )
        need = min_camera_height(self.camera_width)
        _check_int(
            "camera_height", self.camera_height, need, f"a {self.camera_width} px wide frame needs that much"
        )


def _check_rate(field: str, value: object, example: str) -> None:
    ok = (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
    if not ok:
        raise SimConfigError(
            f"SimConfig.{field} must be a positive number per second, got {value!r}; {example}"
        )


def _check_int(field: str, value: object, minimum: int, fix: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise SimConfigError(f"SimConfig.{field} must be an integer, got {value!r}; {fix}")
    if value < minimum:
        raise SimConfigError(f"SimConfig.{field} must be >= {minimum}, got {value}; {fix}")


class SimRig:
    """The virtual rig. ``t`` is seconds since the recording started; arrays are float64 unless noted.

    ``hand_joints`` works whatever ``config.hands`` says: the flag tells a recorder whether to advertise a hand
    stream, the ground truth exists either way.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._motion = RigMotion(config.seed)
        self._audio = AudioSynth(config.audio_rate_hz, config.audio_channels)
        self._camera = CameraRenderer(
            config.camera_width, config.camera_height, config.camera_fps, config.seed, self._motion
        )

    def frame_time(self, seq: int) -> float:
        """Time of headset frame ``seq``."""
        return seq / self.config.headset_rate_hz

    def head_pose(self, t: float) -> np.ndarray:
        """(13,) POSE_FIELDS of the head in the stage frame."""
        return self._motion.head_pose(t)

    def controller_pose(self, side: str, t: float) -> np.ndarray:
        """(13,) POSE_FIELDS of the "left" or "right" controller (grip pose) in the stage frame."""
        return self._motion.controller_pose(side, t)

    def controls(self, side: str, t: float) -> np.ndarray:
        """(8,) CONTROL_FIELDS; buttons follow BUTTON_SCHEDULES exactly."""
        return self._motion.controls(side, t)

    def hand_joints(self, side: str, t: float) -> np.ndarray:
        """(26, 8) HAND_FIELDS per HAND_JOINTS, in the stage frame."""
        return self._motion.hand_joints(side, t)

    def audio_block(self, start_index: int, n: int) -> np.ndarray:
        """(n, audio_channels) int16 samples from ``start_index``; sample i is at t = i / audio_rate_hz."""
        return self._audio.block(start_index, n)

    def audio_events(self, t_end: float) -> list[AudioEvent]:
        """Ground truth: every tone and chirp that starts before ``t_end``, sorted by start."""
        return self._audio.events(t_end)

    def camera_frame(self, name: str, frame_number: int) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame ``frame_number`` of camera ``name``; see ``decode_frame_number``."""
        if name not in self.config.cameras:
            raise ValueError(f"no camera {name!r} in this rig; it has {list(self.config.cameras)}")
        return self._camera.render(name, frame_number)

    def camera_frame_time(self, frame_number: int) -> float:
        """Time of camera frame ``frame_number``: frame_number / camera_fps."""
        return self._camera.frame_time(frame_number)
