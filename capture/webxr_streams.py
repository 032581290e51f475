"""What the WebXR source writes: the OpenXR source's streams (same names, shapes and fields), source ``webxr``.

Replay and training read both alike. Where WebXR differs from OpenXR, the difference is stored, not hidden:
- clock: a sample's ``st`` is page time, ns since the Unix epoch of the page's clock
  (``performance.timeOrigin + XRFrame.predictedDisplayTime``); ``t`` is that time mapped to host monotonic ns
  through the NTP-style fit (capture/webxr_clock.py) current when the frame arrived;
- validity ``v``: XrSpaceLocationFlags as the page derives them from the pose (valid: 0x3; tracked 0x4|0x8
  unless ``emulatedPosition``); velocity bits 0x10/0x20 only when the browser gave velocities;
- hands: WebXR has 25 joints, OpenXR 26 with the palm first. Joints 1-25 are WebXR's in order (wrist first);
  joint 0, the palm, is **derived**: the midpoint of the middle finger's metacarpal bone (WebXR joints
  ``middle-finger-metacarpal`` and ``middle-finger-phalanx-proximal``), with the metacarpal's orientation and
  radius, as OpenXR defines the palm. Its ``jv`` has bit 0x80 (``JOINT_DERIVED``) set beside the flags of the
  two joints it comes from, so a reader can tell it was not tracked;
- controls: the xr-standard gamepad mapped to CONTROL_FIELDS (trigger = button 0, squeeze = 1, thumbstick =
  axes 2/3 and button 3, button_a/b = buttons 4/5); ``menu`` is NaN (browsers do not expose it). The raw button
  states ride along as ``press`` and ``touch`` bitmasks (bit i = gamepad button i).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from capture.openxr_streams import CONTROL_FIELDS, HAND_FIELDS, POSE_FIELDS, SIDES, openxr_streams
from capture.webxr_protocol import JOINT_FLOATS, PAD_FLOATS, POSE_FLOATS, WEBXR_JOINTS
from vrcap.packets import S_DATA, S_SOURCE_TIME, S_TIME, S_VALID
from vrcap.streams import StreamDescriptor

SOURCE = "webxr"
CLOCK = "page_ns"
JOINT_DERIVED = 0x80
S_JOINT_VALID = "jv"
FRAME = (
    "local-floor: right-handed, +Y up, -Z forward, metres, origin on the floor below where the session began "
    "(WebXR 'local-floor' reference space)"
)
MIDDLE_METACARPAL, MIDDLE_PROXIMAL = 10, 11  # WebXR joint indices
_VELOCITY_VALID = (0x10, 0x20)

assert (
    len(POSE_FIELDS) == POSE_FLOATS and len(CONTROL_FIELDS) == PAD_FLOATS and len(HAND_FIELDS) == JOINT_FLOATS
)


def webxr_streams(rate: float) -> list[StreamDescriptor]:
    """Every stream a WebXR recording may fill: inputs come and go (controllers ↔ hands) during a session."""
    streams = openxr_streams(rate, "local", controllers=True, gaze=False, hands=True)
    out = []
    for s in streams:
        extra = dict(s.extra)
        if s.kind == "hand":
            extra["joints"] = "OpenXR XR_EXT_hand_tracking order (26): joint 0 (palm) derived, 1-25 WebXR's"
            extra["palm"] = "derived: midpoint of the middle metacarpal bone; jv bit 0x80 marks it"
        if s.kind == "controls":
            extra["mapping"] = (
                "xr-standard gamepad: trigger=b0 squeeze=b1 stick=axes 2/3 + b3, a/b=b4/b5; menu NaN"
            )
            extra["raw"] = "press, touch: bitmasks of the gamepad's buttons (bit i = button i)"
        out.append(dataclasses.replace(s, source=SOURCE, clock=CLOCK, frame=FRAME, extra=extra))
    return out


def _floats(blob: bytes | None, count: int) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f4", count=count).copy()


def pose_sample(blob: bytes | None, flags: int, t: int, st: int) -> dict[str, Any]:
    values = _floats(blob, POSE_FLOATS)
    if values is None:
        return {
            S_TIME: t,
            S_SOURCE_TIME: st,
            S_DATA: np.full(POSE_FLOATS, np.nan, "<f4").tobytes(),
            S_VALID: 0,
        }
    flags &= 0xF
    if not flags & 0x2:
        values[0:3] = np.nan
    if not flags & 0x1:
        values[3:7] = np.nan
    for bit, part in zip(_VELOCITY_VALID, (slice(7, 10), slice(10, 13)), strict=True):
        if np.isfinite(values[part]).all():
            flags |= bit
        else:
            values[part] = np.nan
    return {S_TIME: t, S_SOURCE_TIME: st, S_DATA: values.tobytes(), S_VALID: flags}


def controls_sample(blob: bytes | None, press: int, touch: int, t: int, st: int) -> dict[str, Any]:
    values = _floats(blob, PAD_FLOATS)
    if values is None:
        values = np.full(PAD_FLOATS, np.nan, "<f4")
    valid = sum(1 << i for i, v in enumerate(values) if math.isfinite(v))
    return {
        S_TIME: t,
        S_SOURCE_TIME: st,
        S_DATA: values.tobytes(),
        S_VALID: valid,
        "press": press,
        "touch": touch,
    }


def hand_sample(blob: bytes | None, t: int, st: int) -> dict[str, Any]:
    """25 WebXR joints (NaN where the browser had no pose) as 26 OpenXR ones with the derived palm first."""
    data = np.full((WEBXR_JOINTS + 1, JOINT_FLOATS), np.nan, dtype="<f4")
    flags = np.zeros(WEBXR_JOINTS + 1, dtype=np.uint8)
    if blob is not None:
        joints = np.frombuffer(blob, dtype="<f4", count=WEBXR_JOINTS * JOINT_FLOATS).reshape(WEBXR_JOINTS, -1)
        data[1:] = joints
        position = np.isfinite(joints[:, 0:3]).all(axis=1)
        orientation = np.isfinite(joints[:, 3:7]).all(axis=1)
        flags[1:] = position * 0x2 | orientation * 0x1
        flags[1:] |= np.where(flags[1:] == 0x3, 0xC, 0).astype(
            np.uint8
        )  # a joint pose the browser gives is tracked, not inferred
        a, b = joints[MIDDLE_METACARPAL], joints[MIDDLE_PROXIMAL]
        data[0, 0:3] = (a[0:3] + b[0:3]) / 2
        data[0, 3:8] = a[3:8]
        flags[0] = (flags[1 + MIDDLE_METACARPAL] & flags[1 + MIDDLE_PROXIMAL]) | JOINT_DERIVED
    every = int(np.bitwise_and.reduce(flags[1:] & 0xF)) if blob is not None else 0
    return {
        S_TIME: t,
        S_SOURCE_TIME: st,
        S_DATA: data.tobytes(),
        S_VALID: every,
        S_JOINT_VALID: flags.tobytes(),
    }


def frame_samples(msg: dict[str, Any], t: int, st: int) -> dict[str, list[dict[str, Any]]]:
    """One XRFrame message as one sample per stream (an input the frame lacks is stored invalid, not skipped)."""
    out = {"head": [pose_sample(msg.get("head"), int(msg.get("head_f", 0x3)), t, st)]}
    for key, side in zip(("l", "r"), SIDES, strict=True):
        out[f"controller_{side}"] = [
            pose_sample(msg.get(f"grip_{key}"), int(msg.get(f"grip_{key}_f", 0x3)), t, st)
        ]
        out[f"aim_{side}"] = [pose_sample(msg.get(f"aim_{key}"), int(msg.get(f"aim_{key}_f", 0x3)), t, st)]
        press, touch = int(msg.get(f"press_{key}", 0)), int(msg.get(f"touch_{key}", 0))
        out[f"controls_{side}"] = [controls_sample(msg.get(f"pad_{key}"), press, touch, t, st)]
        out[f"hand_{side}"] = [hand_sample(msg.get(f"hand_{key}"), t, st)]
    return out
