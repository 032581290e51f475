"""The simulator as a capture source: turns SimRig's functions of time into the packets the writer stores.

Everything is derived from the frame number, so a recording made in real time and one made as fast as
possible hold the same values; only the monotonic timestamps differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capture.sim import CONTROL_FIELDS, HAND_FIELDS, POSE_FIELDS, SimConfig, SimRig
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


def sim_streams(config: SimConfig, jpeg_quality: int) -> list[StreamDescriptor]:
    rate = config.headset_rate_hz
    streams = [_pose("head", rate)]
    for side in SIDES:
        streams.append(_pose(f"controller_{side}", rate))
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
    streams.append(
        StreamDescriptor(
            "audio", "audio", float(config.audio_rate_hz), (-1, config.audio_channels), "int16", "pcm_s16le",
            "PCM, full scale 32767", "", (), "sim", "sample_index", extra={"block": config.audio_block},
        )
    )  # fmt: skip
    for cam in config.cameras:
        streams.append(
            StreamDescriptor(
                f"camera_{cam}", "video", config.camera_fps, (config.camera_height, config.camera_width, 3),
                "uint8", "jpeg", "BGR 8-bit", "", (), "sim", "sim_ns", extra={"jpeg_quality": jpeg_quality},
            )
        )  # fmt: skip
    streams.append(
        StreamDescriptor("annotations", "text", 0.0, (), "", "utf8", "", "", (), "user", "host_ns")
    )
    return streams


class SimSource:
    """Produces packet ``k`` on demand; keeps only the counters of what it has already delivered."""

    def __init__(self, config: SimConfig, jpeg_quality: int, t0_ns: int = 0) -> None:
        import cv2  # only recording needs OpenCV; importing it costs a few hundred ms

        self._cv2 = cv2
        self.config = config
        self.rig = SimRig(config)
        self.t0_ns = t0_ns
        self.jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self.streams = sim_streams(config, jpeg_quality)
        self._next_audio = 0  # index of the next audio sample to deliver
        self._next_frame = 0  # next camera frame number to deliver
        self._peak_dbfs = float("-inf")
        self._warm_up()

    def _warm_up(self) -> None:
        """Pay one-time costs (lazy renders, codec set-up) now, not as dropped frames at the start."""
        for cam in self.config.cameras:
            self._cv2.imencode(".jpg", self.rig.camera_frame(cam, 0), self.jpeg_params)
        self.rig.audio_block(0, self.config.audio_block)
        for side in SIDES:
            self.rig.hand_joints(side, 0.0)

    def take_audio_level(self) -> float:
        """Loudest block (RMS, dBFS) since the last call: what a level meter shows."""
        level, self._peak_dbfs = self._peak_dbfs, float("-inf")
        return level

    def start(self, t0_ns: int) -> int:
        """Pin sim time zero to host monotonic ``t0_ns``; returns it."""
        self.t0_ns = t0_ns
        return t0_ns

    def clocks(self) -> dict[str, Any]:
        """The sim's clocks are exact: a sample index maps to monotonic time with no drift."""
        return {
            "sim": {"type": "offset", "mono_ns_at_zero": self.t0_ns, "unit": "ns"},
            "audio": {
                "type": "linear",
                "unit": "sample_index",
                "segments": [
                    {"from_index": 0, "a_ns": float(self.t0_ns), "b_ns": 1e9 / self.config.audio_rate_hz}
                ],
            },
        }

    def offset_ns(self, seq: int) -> int:
        return round(seq * 1e9 / self.config.headset_rate_hz)

    def packet(self, seq: int) -> dict[str, Any]:
        st = self.offset_ns(seq)
        t = st / 1e9
        rig, mono = self.rig, self.t0_ns + st
        samples: dict[str, list[dict[str, Any]]] = {}

        def pose(values: np.ndarray) -> dict[str, Any]:
            return {
                S_TIME: mono,
                S_SOURCE_TIME: st,
                S_DATA: values.astype("<f4").tobytes(),
                S_VALID: POSE_ALL_VALID,
            }

        samples["head"] = [pose(rig.head_pose(t))]
        for side in SIDES:
            samples[f"controller_{side}"] = [pose(rig.controller_pose(side, t))]
            samples[f"controls_{side}"] = [
                {S_TIME: mono, S_SOURCE_TIME: st, S_DATA: rig.controls(side, t).astype("<f4").tobytes()}
            ]
            if self.config.hands:
                samples[f"hand_{side}"] = [pose(rig.hand_joints(side, t))]
        audio = self._audio_until(st)
        if audio:
            samples["audio"] = audio
        samples.update(self._frames_until(st))
        return {SEQ: seq, TIME: mono, SOURCE_TIME: st, SAMPLES: samples}

    def _audio_until(self, st_ns: int) -> list[dict[str, Any]]:
        cfg = self.config
        block, rate = cfg.audio_block, cfg.audio_rate_hz
        available = st_ns * rate // 1_000_000_000  # samples whose time has come
        out = []
        while self._next_audio + block <= available:
            i = self._next_audio
            pcm = self.rig.audio_block(i, block)
            out.append(
                {
                    S_TIME: self.t0_ns + round(i * 1e9 / rate),
                    S_SOURCE_TIME: i,
                    S_INDEX: i,
                    S_COUNT: block,
                    S_DATA: pcm.astype("<i2").tobytes(),
                }
            )
            self._next_audio = i + block
            rms = float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2)))
            self._peak_dbfs = max(self._peak_dbfs, 20 * np.log10(max(rms, 1e-3) / 32768.0))
        return out

    def _frames_until(self, st_ns: int) -> dict[str, list[dict[str, Any]]]:
        """Camera frames whose time has come, JPEG-encoded as a camera would deliver them."""
        out: dict[str, list[dict[str, Any]]] = {}
        fps = self.config.camera_fps
        while (frame_ns := round(self._next_frame * 1e9 / fps)) <= st_ns:
            k = self._next_frame
            for cam in self.config.cameras:
                ok, jpeg = self._cv2.imencode(".jpg", self.rig.camera_frame(cam, k), self.jpeg_params)
                if not ok:
                    raise RuntimeError(f"OpenCV could not JPEG-encode sim frame {k} of camera {cam}")
                out.setdefault(f"camera_{cam}", []).append(
                    {
                        S_TIME: self.t0_ns + frame_ns,
                        S_SOURCE_TIME: frame_ns,
                        S_FRAME: k,
                        S_DATA: jpeg.tobytes(),
                    }
                )
            self._next_frame += 1
        return out
