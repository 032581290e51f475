"""Hand joints through XR_EXT_hand_tracking: 26 joints per hand, located once per frame.

The allocation quirk: pyopenxr's ``xr.locate_hand_joints_ext`` hands the runtime a fresh
``HandJointLocationsEXT()`` whose joint array is empty (count 0, NULL pointer); the joints never arrive. We
allocate ``HandJointLocationEXT * 26`` once per hand, point a ``HandJointLocationsEXT`` at it, and pass that
to ``XrApi.locate_hand_joints`` every frame; numpy reads the same memory (no per-joint Python loop).

Each sample (stream ``hand_left`` / ``hand_right``, kind "hand"):
- ``d``: 26 × (px py pz qx qy qz qw radius) float32; a joint's position (and radius) is NaN when its position is
  not valid, its orientation NaN when its orientation is not valid — never zeros that look real;
- ``jv``: 26 uint8, each joint's XrSpaceLocationFlags (0 for every joint when the hand is not tracked);
- ``v``: the flags every joint has (AND over the joints), 0 when the runtime says the hand is not active.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Any

import numpy as np

from capture.openxr_api import HAND_JOINT_COUNT, is_loss
from capture.openxr_streams import HAND_FIELDS, ORIENTATION_VALID, POSITION_VALID, SIDES
from vrcap.packets import S_DATA, S_SOURCE_TIME, S_TIME, S_VALID

S_JOINT_VALID = "jv"  # sample key: per-joint XrSpaceLocationFlags, uint8 each

# XrHandJointLocationEXT in memory: XrSpaceLocationFlags (uint64), XrPosef (orientation xyzw, then position xyz),
# radius. 40 bytes; checked against ctypes.sizeof when the trackers are made.
JOINT_DTYPE = np.dtype(
    [("flags", "<u8"), ("q", "<f4", (4,)), ("p", "<f4", (3,)), ("radius", "<f4")], align=False
)


class HandTracking:
    """One XrHandTrackerEXT per hand and its preallocated 26-joint buffer."""

    def __init__(self, api: Any, session: Any) -> None:
        import xr  # the joint structs are pyopenxr's ctypes types, whatever api object is in use

        if ctypes.sizeof(xr.HandJointLocationEXT) != JOINT_DTYPE.itemsize:
            raise RuntimeError("pyopenxr's HandJointLocationEXT layout changed; update JOINT_DTYPE")
        self.api = api
        self.trackers: dict[str, Any] = {}
        self.locations: dict[str, Any] = {}  # side -> HandJointLocationsEXT pointing at its 26 joints
        self._joints: dict[str, Any] = {}  # side -> the ctypes array itself (kept alive here)
        self._view: dict[str, np.ndarray] = {}
        self.errors = 0
        try:
            for side in SIDES:
                self.trackers[side] = api.create_hand_tracker(session, side)
                joints = (xr.HandJointLocationEXT * HAND_JOINT_COUNT)()
                self._joints[side] = joints
                self.locations[side] = xr.HandJointLocationsEXT(joint_locations=joints)
                self._view[side] = np.frombuffer(joints, dtype=JOINT_DTYPE)
        except BaseException:
            self.close()
            raise

    def read(self, base: Any, xr_time: int, t: int) -> dict[str, list[dict[str, Any]]]:
        return {f"hand_{side}": [self._sample(side, base, xr_time, t)] for side in SIDES}

    def _sample(self, side: str, base: Any, xr_time: int, t: int) -> dict[str, Any]:
        locations = self.locations[side]
        locations.is_active = 0  # a failed call must not leave last frame's joints looking current
        try:
            self.api.locate_hand_joints(self.trackers[side], base, xr_time, locations)
        except Exception as exc:
            if is_loss(exc):
                raise
            self.errors += 1
        joints = self._view[side]
        flags = (joints["flags"] & 0xF).astype(np.uint8)
        if not locations.is_active:
            flags[:] = 0
        data = np.empty((HAND_JOINT_COUNT, len(HAND_FIELDS)), dtype="<f4")
        data[:, 0:3] = joints["p"]
        data[:, 3:7] = joints["q"]
        data[:, 7] = joints["radius"]
        no_position = (flags & POSITION_VALID) == 0
        data[no_position, 0:3] = np.nan
        data[no_position, 7] = np.nan
        data[(flags & ORIENTATION_VALID) == 0, 3:7] = np.nan
        every = int(np.bitwise_and.reduce(flags)) if locations.is_active else 0
        return {
            S_TIME: t,
            S_SOURCE_TIME: xr_time,
            S_DATA: data.tobytes(),
            S_VALID: every,
            S_JOINT_VALID: flags.tobytes(),
        }

    def close(self) -> None:
        for tracker in self.trackers.values():
            with contextlib.suppress(Exception):  # closing releases what it can; the runtime may be gone
                self.api.destroy_hand_tracker(tracker)
        self.trackers = {}
