"""A deterministic virtual VR rig: every pose, input, hand joint, audio sample, pixel and text is a function of time.

Why: the recorder, the session format and the replay tools need ground truth to be tested against, on machines
with no headset, and a model needs sessions with something to learn. ``SimRig`` answers "what did the hardware
report at time t?" exactly, with no I/O, no wall clock and no unseeded randomness: the same config gives
bit-identical outputs, another ``seed`` other tasks, motion, voice and text. The calibration tones and chirps and
the button presses do not depend on the seed, so tests can hard-code their times.

Split by concern, re-exported here:

    sim_tasks.py    the seeded tasks: instruction, transcript and motion offsets of each (TaskSchedule)
    sim_motion.py   head, controllers, controller inputs, hand skeletons (POSE_FIELDS, HAND_JOINTS, ...)
    sim_speech.py   the seeded voice saying each transcript, clear of the calibration tones
    sim_media.py    microphone audio (tones, chirps, words); camera frames with a frame-number barcode
    sim.py          SimConfig (+ SimConfigError) and the SimRig facade
    offline.py      `vrcap record --offline`: a whole session through SessionWriter, unpaced
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass as plain_dataclass

import numpy as np
from pydantic import Field, StrictBool
from pydantic.dataclasses import dataclass

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
from capture.sim_tasks import EPISODE_S, TASK_KINDS, Task, TaskSchedule
from vrcap.errors import ConfigError

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
    "EPISODE_S",
    "HAND_FIELDS",
    "HAND_JOINTS",
    "MAX_FRAME_NUMBER",
    "MIN_AUDIO_RATE_HZ",
    "MIN_CAMERA_WIDTH",
    "POSE_FIELDS",
    "SIDES",
    "TASK_KINDS",
    "TONE_DURATION_MS",
    "TONE_FIRST_MS",
    "TONE_FREQS_HZ",
    "TONE_PERIOD_MS",
    "AudioEvent",
    "ButtonSchedule",
    "SimConfig",
    "SimConfigError",
    "SimRig",
    "SimText",
    "Task",
    "TaskSchedule",
    "decode_frame_number",
    "draw_frame_overlay",
]

MIN_AUDIO_RATE_HZ = 16000  # the chirp reaches 4 kHz; below 16 kHz it would sit too close to Nyquist
_CAMERA_NAME = re.compile(r"[a-z0-9_]+")


class SimConfigError(ConfigError):
    """A SimConfig value that cannot work; the message names the field and a value that would. A ConfigError,
    not a ValueError: pydantic would wrap a ValueError from __post_init__ into its own multi-line report."""


@dataclass
class SimConfig:
    """The virtual rig: which devices it has and how fast they report."""

    headset_rate_hz: float = Field(
        90.0, gt=0, le=1000, description="frame clock of the virtual headset (poses, controls, hands)"
    )
    hands: StrictBool = Field(
        True, description="whether the rig reports hand tracking, 26 joints per hand (XR_EXT_hand_tracking)"
    )
    audio_rate_hz: int = Field(
        48000, ge=MIN_AUDIO_RATE_HZ, le=384000, description="microphone sample rate (the chirp reaches 4 kHz)"
    )
    audio_channels: int = Field(
        1, ge=1, le=32, description="channel c carries the mono signal scaled by 0.8**c"
    )
    audio_block: int = Field(
        480,
        ge=1,
        le=96000,
        description="samples per block the virtual microphone delivers (480 = 10 ms at 48 kHz)",
    )
    cameras: tuple[str, ...] = Field(
        ("left", "right"), description='"left"/"right" form a stereo pair; names are [a-z0-9_]+'
    )
    camera_width: int = Field(
        640,
        ge=MIN_CAMERA_WIDTH,
        le=7680,
        description="pixels; >= 320 so the frame-number barcode stays readable",
    )
    camera_height: int = Field(
        480,
        ge=min_camera_height(MIN_CAMERA_WIDTH),
        le=4320,
        description="pixels; >= camera_width / 8 (barcode plus text line)",
    )
    camera_fps: float = Field(30.0, gt=0, le=1000, description="frame k is at t = k / camera_fps")
    seed: int = Field(
        0,
        ge=0,
        le=2**63 - 1,
        description="picks tasks, voice and trajectory phases; the same seed gives bit-identical outputs",
    )
    tasks: StrictBool = Field(
        True,
        description="perform seeded tasks announced by instructions (internal text); false: free motion only",
    )
    speech: StrictBool = Field(
        True, description="with tasks: say each task's transcript (words in the microphone, external text)"
    )

    def __post_init__(self) -> None:
        """What one field's bounds cannot say: camera names, and a height that depends on the width."""
        self.cameras = tuple(self.cameras)  # YAML and the CLI give lists
        for name in self.cameras:
            if not _CAMERA_NAME.fullmatch(name):
                raise SimConfigError(
                    f"SimConfig.cameras has the name {name!r}; camera names must be non-empty and use only "
                    "a-z, 0-9 and '_', e.g. cameras: [left, right]"
                )
        if len(set(self.cameras)) != len(self.cameras):
            raise SimConfigError(
                f"SimConfig.cameras lists a camera twice: {list(self.cameras)}; name each once"
            )
        need = min_camera_height(self.camera_width)
        if self.camera_height < need:
            raise SimConfigError(
                f"SimConfig.camera_height must be >= {need}, got {self.camera_height}; a {self.camera_width} px "
                "wide frame needs that much"
            )


@plain_dataclass(frozen=True)
class SimText:
    """One text event of the sim, as the annotations stream carries it (docs/FORMAT.md)."""

    t_s: float  # seconds since the recording started
    text: str
    kind: str  # "instruction" or "transcript"
    channel: str  # "internal" (instructions) or "external" (what is said)
    task: Task


class SimRig:
    """The virtual rig. ``t`` is seconds since the recording started; arrays are float64 unless noted.

    ``hand_joints`` works whatever ``config.hands`` says: the flag tells a recorder whether to advertise a hand
    stream, the ground truth exists either way.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        speaks = config.tasks and config.speech
        self._audio = AudioSynth(config.audio_rate_hz, config.audio_channels, config.seed if speaks else None)
        self.tasks = TaskSchedule(config.seed, self._audio.speech) if config.tasks else None
        self._audio.tasks = self.tasks
        self._motion = RigMotion(config.seed, self.tasks)
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

    def text_events(self, t_end: float, transcripts: bool = True) -> list[SimText]:
        """Ground truth of the text: each task's instruction at its start and, with speech, its transcript at its
        first word; every event before ``t_end``, sorted by time. Empty without ``config.tasks``."""
        if self.tasks is None:
            return []
        out = []
        speaks = transcripts and self._audio.speech is not None
        for number in range(math.floor(max(t_end, 0.0) / EPISODE_S) + 1):
            episode = self.tasks.episode(number)
            for task, first in zip(episode.tasks, episode.first_word, strict=True):
                out.append(SimText(task.start_s, task.instruction, "instruction", "internal", task))
                if speaks:
                    said = episode.words[first].start / self.config.audio_rate_hz
                    out.append(SimText(said, task.transcript, "transcript", "external", task))
        return sorted((e for e in out if e.t_s < t_end), key=lambda e: e.t_s)

    def prepare(self, t_end: float) -> None:
        """Draw the tasks and render the words until ``t_end`` now, so a live recording's first frames and audio
        blocks do not pay for them (a word's sound is rendered once, ~15 ms, then reused)."""
        if self.tasks is None:
            return
        end = t_end * self.config.audio_rate_hz
        for number in range(math.floor(max(t_end, 0.0) / EPISODE_S) + 1):
            self._audio.prepare([w for w in self.tasks.episode(number).words if w.start < end])

    def camera_frame(self, name: str, frame_number: int) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame ``frame_number`` of camera ``name``; see ``decode_frame_number``."""
        if name not in self.config.cameras:
            raise ValueError(f"no camera {name!r} in this rig; it has {list(self.config.cameras)}")
        return self._camera.render(name, frame_number)

    def camera_frame_time(self, frame_number: int) -> float:
        """Time of camera frame ``frame_number``: frame_number / camera_fps."""
        return self._camera.frame_time(frame_number)
