"""What the OpenXR source writes: stream descriptors and the packing of poses and controls into samples.

The layouts are the simulator's (docs/FORMAT.md §4), so replay treats both sources alike; the OpenXR source adds
``aim_left/right`` (the pointing ray, next to the grip pose in ``controller_*``) and ``gaze`` when the runtime
offers eye gaze. What a real device cannot vouch for is stored as such, never as zeros that look real:
- a pose's ``v`` holds XrSpaceLocationFlags (0x1-0x8) and XrSpaceVelocityFlags shifted by 4 (0x10, 0x20); each
  part whose bit is clear is NaN in ``d`` (Monado's simulated headset, for one, reports no velocities);
- a controls sample's ``v`` has bit i set when field i comes from an active action; inactive fields are NaN
  (no controller, an unbound input, or a session without focus);
- hands: see capture/openxr_hands.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capture.openxr_api import Location
from vrcap.packets import S_DATA, S_SOURCE_TIME, S_TIME, S_VALID
from vrcap.streams import StreamDescriptor

SIDES = ("left", "right")
POSE_FIELDS = ("px", "py", "pz", "qx", "qy", "qz", "qw", "vx", "vy", "vz", "wx", "wy", "wz")
CONTROL_FIELDS = (
    "trigger", "squeeze", "thumbstick_x", "thumbstick_y", "button_a", "button_b", "menu", "thumbstick_click",
)  # fmt: skip
HAND_FIELDS = ("px", "py", "pz", "qx", "qy", "qz", "qw", "radius")
CLOCK = "xr_time_ns"
SOURCE = "openxr"
POSE_UNITS = "position m; orientation unit quaternion xyzw; linear velocity m/s; angular velocity rad/s"
FRAMES = {
    "stage": "stage: right-handed, +Y up, -Z forward, metres (OpenXR STAGE space)",
    "local": "local: right-handed, +Y up, -Z forward, metres, origin at the head when the session began "
    "(OpenXR LOCAL space)",
}
POSE_VALIDITY = "v: XrSpaceLocationFlags | XrSpaceVelocityFlags << 4; parts whose bit is clear are NaN"
CONTROLS_VALIDITY = "v: bit i set when field i is active; inactive fields are NaN"

_NAN_POSE = np.full(len(POSE_FIELDS), np.nan, dtype="<f4")
# XrSpaceLocationFlags / XrSpaceVelocityFlags bits.
ORIENTATION_VALID, POSITION_VALID = 0x1, 0x2
LINEAR_VALID, ANGULAR_VALID = 0x1, 0x2


def _pose(name: str, rate: float, frame: str, kind: str = "pose", **extra: Any) -> StreamDescriptor:
    return StreamDescriptor(
        name, kind, rate, (len(POSE_FIELDS),), "float32", "raw", POSE_UNITS, frame, POSE_FIELDS, SOURCE, CLOCK,
        extra={"validity": POSE_VALIDITY, **extra},
    )  # fmt: skip


def openxr_streams(
    rate: float, space: str, *, controllers: bool, gaze: bool, hands: bool, fallback_note: str = ""
) -> list[StreamDescriptor]:
    """The streams of one recording, once ``open()`` knows what the runtime offers."""
    frame = FRAMES[space] + fallback_note
    streams = [_pose("head", rate, frame, pose="OpenXR VIEW space (between the eyes)")]
    if controllers:
        for side in SIDES:
            streams.append(_pose(f"controller_{side}", rate, frame, pose="grip pose"))
            streams.append(_pose(f"aim_{side}", rate, frame, pose="aim pose (pointing ray along -Z)"))
        for side in SIDES:
            streams.append(
                StreamDescriptor(
                    f"controls_{side}", "controls", rate, (len(CONTROL_FIELDS),), "float32", "raw",
                    "trigger/squeeze 0..1; thumbstick -1..1; buttons 0 or 1", "", CONTROL_FIELDS, SOURCE, CLOCK,
                    extra={"validity": CONTROLS_VALIDITY,
                           "mapping": "Vive: trackpad as thumbstick; Touch: X/Y (left), A/B (right) as button_a/b"},
                )
            )  # fmt: skip
    if gaze:
        streams.append(_pose("gaze", rate, frame, kind="gaze", pose="XR_EXT_eye_gaze_interaction gaze pose"))
    if hands:
        for side in SIDES:
            streams.append(
                StreamDescriptor(
                    f"hand_{side}", "hand", rate, (26, len(HAND_FIELDS)), "float32", "raw",
                    "position m; orientation unit quaternion xyzw; radius m", frame, HAND_FIELDS, SOURCE, CLOCK,
                    extra={"joints": "XR_EXT_hand_tracking order (26)",
                           "validity": "v: AND of the joints' XrSpaceLocationFlags, 0 when the hand is not "
                           "tracked; jv: 26 uint8 XrSpaceLocationFlags, one per joint; invalid parts are NaN"},
                )
            )  # fmt: skip
    return streams


def pose_sample(location: Location | None, t: int, st: int) -> dict[str, Any]:
    """One pose sample; ``None`` (the space could not be located at all) is stored as fully invalid."""
    if location is None:
        return {S_TIME: t, S_SOURCE_TIME: st, S_DATA: _NAN_POSE.tobytes(), S_VALID: 0}
    flags, vflags = location.flags & 0xF, location.velocity_flags & 0x3
    values = np.array(location.values, dtype="<f4")
    if not flags & POSITION_VALID:
        values[0:3] = np.nan
    if not flags & ORIENTATION_VALID:
        values[3:7] = np.nan
    if not vflags & LINEAR_VALID:
        values[7:10] = np.nan
    if not vflags & ANGULAR_VALID:
        values[10:13] = np.nan
    return {S_TIME: t, S_SOURCE_TIME: st, S_DATA: values.tobytes(), S_VALID: flags | vflags << 4}


def controls_sample(fields: list[tuple[bool, float]], t: int, st: int) -> dict[str, Any]:
    """``fields``: (active, value) per CONTROL_FIELDS entry, in order."""
    values = np.array([value if active else math.nan for active, value in fields], dtype="<f4")
    valid = sum(1 << i for i, (active, _) in enumerate(fields) if active)
    return {S_TIME: t, S_SOURCE_TIME: st, S_DATA: values.tobytes(), S_VALID: valid}


def untracked(streams: list[StreamDescriptor], t: int, st: int) -> dict[str, list[dict[str, Any]]]:
    """A frame in which nothing could be read (the session ended or is not running): every stream invalid."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in streams:
        count = int(np.prod(s.shape))
        sample: dict[str, Any] = {
            S_TIME: t,
            S_SOURCE_TIME: st,
            S_DATA: np.full(count, np.nan, dtype="<f4").tobytes(),
            S_VALID: 0,
        }
        if s.kind == "hand":
            sample["jv"] = bytes(s.shape[0])
        out[s.name] = [sample]
    return out
