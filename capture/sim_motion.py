"""Closed-form motion of the simulated rig: head, controllers, controller inputs and hand skeletons.

Why closed form: tests compare what the recorder wrote with ground truth at the recorded timestamp, so every
output is an exact function of ``t`` (seconds since the recording started): no integration, no hidden state,
no wall clock. Velocities are the analytic derivatives of the same formulas, so a finite-difference check can
tell a sign or frame mistake from rounding noise.

Conventions are OpenXR's: stage frame, right-handed, +Y up, -Z forward, metres, radians; quaternions are
(x, y, z, w) and angular velocities are expressed in the stage frame.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from capture.sim_tasks import TASK_MAX_PITCH_RAD, TASK_MAX_YAW_RAD, TaskSchedule
from vrcap.quaternion import quat_mul, quat_rotate

POSE_FIELDS: tuple[str, ...] = ("px", "py", "pz", "qx", "qy", "qz", "qw", "vx", "vy", "vz", "wx", "wy", "wz")
CONTROL_FIELDS: tuple[str, ...] = (
    "trigger",
    "squeeze",
    "thumbstick_x",
    "thumbstick_y",
    "button_a",
    "button_b",
    "menu",
    "thumbstick_click",
)
HAND_FIELDS: tuple[str, ...] = ("px", "py", "pz", "qx", "qy", "qz", "qw", "radius")
_FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")
_THUMB_JOINTS = ("metacarpal", "proximal", "distal", "tip")
_FINGER_JOINTS = ("metacarpal", "proximal", "intermediate", "distal", "tip")
# XR_EXT_hand_tracking order (XrHandJointEXT 0..25).
HAND_JOINTS: tuple[str, ...] = (
    "palm",
    "wrist",
    *[f"thumb_{joint}" for joint in _THUMB_JOINTS],
    *[f"{finger}_{joint}" for finger in _FINGER_NAMES[1:] for joint in _FINGER_JOINTS],
)
SIDES: tuple[str, ...] = ("left", "right")

_X, _Y, _Z = 0, 1, 2
_IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])
_TWO_PI = 2.0 * math.pi


# --- quaternions: (..., 4) arrays in (x, y, z, w) order; products and rotations in vrcap/quaternion.py ------


def axis_quat(axis: int, angle: np.ndarray | float) -> np.ndarray:
    """Quaternions for rotations by ``angle`` (any shape) about the stage axis ``axis`` (0=X, 1=Y, 2=Z)."""
    half = 0.5 * np.asarray(angle, dtype=np.float64)
    out = np.zeros((*half.shape, 4))
    out[..., axis] = np.sin(half)
    out[..., 3] = np.cos(half)
    return out


# Single poses use plain floats: numpy's per-call overhead on 4-element arrays made a pose cost ~200 µs,
# and the camera needs three poses per frame.
Quat = tuple[float, float, float, float]
Vec = tuple[float, float, float]


def _qmul(a: Quat, b: Quat) -> Quat:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def _qrot(q: Quat, v: Vec) -> Vec:
    x, y, z, w = q
    vx, vy, vz = v
    tx, ty, tz = 2.0 * (y * vz - z * vy), 2.0 * (z * vx - x * vz), 2.0 * (x * vy - y * vx)
    return (vx + w * tx + y * tz - z * ty, vy + w * ty + z * tx - x * tz, vz + w * tz + x * ty - y * tx)


def _axis_q(axis: int, angle: float) -> Quat:
    s, c = math.sin(0.5 * angle), math.cos(0.5 * angle)
    return (s, 0.0, 0.0, c) if axis == _X else (0.0, s, 0.0, c) if axis == _Y else (0.0, 0.0, s, c)


def _euler_chain(axes: Sequence[int], angles: Sequence[float], rates: Sequence[float]) -> tuple[Quat, Vec]:
    """Orientation ``R1(a1)·R2(a2)·…`` and its stage-frame angular velocity ``Σ (R1…R(k-1))·e_k·a_k'``.

    Built from half-angle sines of continuous angles, the quaternion never jumps hemispheres.
    """
    q: Quat = (0.0, 0.0, 0.0, 1.0)
    wx = wy = wz = 0.0
    for axis, angle, rate in zip(axes, angles, rates, strict=True):
        ex, ey, ez = _qrot(q, (float(axis == _X), float(axis == _Y), float(axis == _Z)))
        wx, wy, wz = wx + ex * rate, wy + ey * rate, wz + ez * rate
        q = _qmul(q, _axis_q(axis, angle))
    return q, (wx, wy, wz)


class _SineSums:
    """Rows of sums of sines, ``row_i(t) = Σ_j amp[i, j]·sin(2π·t / period[i, j] + phase[i, j])``.

    Phases come from the seeded generator, so a seed picks a trajectory while amplitudes and periods (and
    hence the ranges tests rely on) stay fixed.
    """

    def __init__(
        self, amps: Sequence[Sequence[float]], periods: Sequence[Sequence[float]], rng: np.random.Generator
    ):
        self._amp = np.asarray(amps, dtype=np.float64)
        self._omega = _TWO_PI / np.asarray(periods, dtype=np.float64)
        self._phase = rng.uniform(0.0, _TWO_PI, self._amp.shape)

    def __call__(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Values and time derivatives of every row at ``t``."""
        arg = self._omega * t + self._phase
        return (self._amp * np.sin(arg)).sum(axis=1), (self._amp * self._omega * np.cos(arg)).sum(axis=1)


# --- motion tables -------------------------------------------------------------------------------------------
# Rows: px, py, pz (offsets from the standing position), yaw (about +Y), pitch (+X), roll (+Z).
_HEAD_BASE = np.array([0.0, 1.6, 0.0])
_HEAD_AMPS = ((0.15, 0.05), (0.04, 0.02), (0.12, 0.06), (0.70, 0.347), (0.22, 0.129), (0.20, 0.149))
_HEAD_PERIODS = ((7.3, 3.1), (4.7, 2.3), (8.9, 3.7), (9.7, 4.3), (6.1, 2.9), (5.3, 2.2))
HEAD_MAX_YAW_RAD = sum(_HEAD_AMPS[3])  # 60°: the camera pre-renders a panorama wide enough for it
HEAD_MAX_PITCH_RAD = sum(_HEAD_AMPS[4])  # 20°
# With tasks, the free-running head turns less, so that it plus a task's look stays within the same range.
_TASK_HEAD_GAIN = np.array(
    [
        1.0,
        1.0,
        1.0,
        1.0 - TASK_MAX_YAW_RAD / HEAD_MAX_YAW_RAD,
        1.0 - TASK_MAX_PITCH_RAD / HEAD_MAX_PITCH_RAD,
        0.5,
    ]
)
_TASK_CONTROLLER_GAIN = 0.6  # and the hands wander less: the task motion is what there is to learn
# Controllers: offset from the head in the head's yaw frame, then their own yaw/pitch/roll. Slower loops.
_CONTROLLER_BASE = {"left": np.array([-0.18, -0.30, -0.28]), "right": np.array([0.18, -0.30, -0.28])}
_CONTROLLER_AMPS = ((0.06, 0.03), (0.05, 0.03), (0.05, 0.02), (0.25, 0.10), (0.30, 0.10), (0.30, 0.15))
_CONTROLLER_PERIODS = ((9.1, 6.3), (8.3, 5.9), (7.7, 6.1), (9.5, 6.9), (8.1, 6.7), (7.9, 5.3))
# Analog inputs: trigger, squeeze, thumbstick radius, thumbstick angle (one turn per period).
_INPUT_PERIODS = {"left": (3.1, 5.3, 6.1, 4.3), "right": (3.7, 4.1, 7.3, 3.9)}
_STICK_MAX_RADIUS = 0.9


@dataclass(frozen=True)
class ButtonSchedule:
    """A button held for ``held_s`` every ``period_s``, first pressed at ``first_left_s`` / ``first_right_s``.

    Pressed on the half-open interval [press, press + held_s): a sample exactly at the release time reads 0.
    Times that land exactly on an edge are subject to float rounding; sample a microsecond away to be sure.
    """

    period_s: float
    held_s: float
    first_left_s: float
    first_right_s: float

    def first_press_s(self, side: str) -> float:
        return self.first_left_s if side == "left" else self.first_right_s

    def is_pressed(self, side: str, t: float) -> bool:
        since = t - self.first_press_s(side)
        return since >= 0.0 and since % self.period_s < self.held_s

    def presses(self, side: str, t_end: float) -> list[tuple[float, float]]:
        """(press, release) times of every press that starts before ``t_end``."""
        first = self.first_press_s(side)
        count = max(0, math.ceil((t_end - first) / self.period_s))
        return [(first + k * self.period_s, first + k * self.period_s + self.held_s) for k in range(count)]


# Seed-independent, so tests and downstream checks can hard-code them.
BUTTON_SCHEDULES: Mapping[str, ButtonSchedule] = types.MappingProxyType(
    {
        "button_a": ButtonSchedule(period_s=2.0, held_s=0.25, first_left_s=1.0, first_right_s=1.5),
        "button_b": ButtonSchedule(period_s=3.0, held_s=0.4, first_left_s=1.25, first_right_s=2.75),
        "menu": ButtonSchedule(period_s=10.0, held_s=0.5, first_left_s=7.0, first_right_s=8.0),
        "thumbstick_click": ButtonSchedule(period_s=4.0, held_s=0.15, first_left_s=2.2, first_right_s=3.2),
    }
)


# --- hand skeleton -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Finger:
    """One finger of a right hand in the wrist frame (+X away from the thumb, +Y back of the hand, -Z along)."""

    base: tuple[float, float, float]  # metacarpal joint, metres from the wrist
    splay: float  # rad about +Y; positive turns the finger toward the thumb
    droop: float  # rad about -X, toward the palm
    bones: tuple[float, ...]  # length of the bone starting at each joint, metres (the tip has none)
    flex: tuple[float, ...]  # flexion added at each joint at full curl, rad
    radii: tuple[float, ...]  # per joint, metres


_FLEX = (0.0, 1.2, 1.4, 0.9, 0.0)  # metacarpal rigid; MCP, PIP, DIP bend up to 200° in all at a full fist
_FINGERS = (  # thumb, index, middle, ring, little
    _Finger(
        base=(-0.020, -0.010, -0.010),
        splay=0.70,
        droop=0.40,
        bones=(0.045, 0.032, 0.025),
        flex=(0.3, 0.5, 0.7, 0.0),
        radii=(0.011, 0.010, 0.008, 0.007),
    ),
    _Finger(
        base=(-0.012, 0.0, -0.015),
        splay=0.10,
        droop=0.0,
        bones=(0.065, 0.040, 0.024, 0.020),
        flex=_FLEX,
        radii=(0.010, 0.009, 0.008, 0.007, 0.006),
    ),
    _Finger(
        base=(0.0, 0.0, -0.015),
        splay=0.0,
        droop=0.0,
        bones=(0.064, 0.044, 0.028, 0.021),
        flex=_FLEX,
        radii=(0.010, 0.009, 0.008, 0.007, 0.006),
    ),
    _Finger(
        base=(0.011, 0.0, -0.014),
        splay=-0.08,
        droop=0.0,
        bones=(0.058, 0.041, 0.027, 0.020),
        flex=_FLEX,
        radii=(0.010, 0.009, 0.008, 0.007, 0.006),
    ),
    _Finger(
        base=(0.021, 0.0, -0.012),
        splay=-0.17,
        droop=0.0,
        bones=(0.053, 0.032, 0.019, 0.018),
        flex=_FLEX,
        radii=(0.009, 0.008, 0.007, 0.006, 0.005),
    ),
)
_REST_CURL = 0.1  # the least curl: relaxed fingers are never perfectly straight
_WRIST_IN_GRIP = (0.0, 0.0, 0.09)  # the wrist sits 9 cm behind the grip, toward the user


@dataclass(frozen=True)
class _HandModel:
    """Static arrays that turn five curl values into 26 joint poses with a few matrix products."""

    base_pos: np.ndarray  # (26, 3) start of each joint's finger chain
    base_quat: np.ndarray  # (26, 4) splay and droop of the joint's finger
    bone: np.ndarray  # (26,) length of the bone leaving each joint
    gain: np.ndarray  # (26, 5) cumulative flexion per unit curl of each finger
    chain: np.ndarray  # (26, 26) which bones lie between a chain's start and each joint
    radius: np.ndarray  # (26,)

    @classmethod
    def build(cls, mirror: bool) -> _HandModel:
        """The right hand, or its mirror image in X (a left hand) when ``mirror``."""
        n = len(HAND_JOINTS)
        sign = -1.0 if mirror else 1.0
        base_pos, base_quat = np.zeros((n, 3)), np.tile(_IDENTITY_QUAT, (n, 1))
        bone, gain, chain, radius = np.zeros(n), np.zeros((n, 5)), np.zeros((n, n)), np.zeros(n)
        j = 2
        for f, finger in enumerate(_FINGERS):
            first = j
            quat = quat_mul(axis_quat(_Y, sign * finger.splay), axis_quat(_X, -finger.droop))
            for k, flex in enumerate(finger.flex):
                base_pos[j] = (sign * finger.base[0], finger.base[1], finger.base[2])
                base_quat[j] = quat
                bone[j] = finger.bones[k] if k < len(finger.bones) else 0.0
                gain[j, f] = flex + (gain[j - 1, f] if k else 0.0)
                chain[j, first:j] = 1.0
                radius[j] = finger.radii[k]
                j += 1
        middle = HAND_JOINTS.index("middle_metacarpal")
        # Palm: centre of the middle metacarpal; wrist: the chain origin.
        base_pos[0], base_quat[0], chain[0, middle], radius[0] = (
            base_pos[middle],
            base_quat[middle],
            0.5,
            0.012,
        )
        radius[1] = 0.011
        return cls(base_pos, base_quat, bone, gain, chain, radius)

    def local_joints(self, curls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (26, 3) and orientations (26, 4) in the wrist frame for curls (5,) in [0, 1]."""
        flexion = self.gain @ (_REST_CURL + (1.0 - _REST_CURL) * curls)  # (26,)
        quat = quat_mul(self.base_quat, axis_quat(_X, -flexion))  # curl toward the palm (-Y)
        bones = quat_rotate(quat, np.array([0.0, 0.0, -1.0])) * self.bone[:, None]  # (26, 3)
        return self.base_pos + self.chain @ bones, quat


_HANDS = {"left": _HandModel.build(mirror=True), "right": _HandModel.build(mirror=False)}


def check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")


class RigMotion:
    """Head, controllers, inputs and hands of one simulated person; a pure function of (seed, t).

    With a ``TaskSchedule`` the person also performs its tasks: their offsets are added to a calmer free-running
    motion (``_TASK_HEAD_GAIN``, ``_TASK_CONTROLLER_GAIN``), so head turns stay within the documented range.
    """

    def __init__(self, seed: int, tasks: TaskSchedule | None = None) -> None:
        rng = np.random.default_rng(seed)  # draw order is fixed: the same seed always gives the same phases
        head_gain = _TASK_HEAD_GAIN if tasks is not None else np.ones(6)
        hand_gain = _TASK_CONTROLLER_GAIN if tasks is not None else 1.0
        self._head = _SineSums(np.asarray(_HEAD_AMPS) * head_gain[:, None], _HEAD_PERIODS, rng)
        self._controllers = {
            side: _SineSums(np.asarray(_CONTROLLER_AMPS) * hand_gain, _CONTROLLER_PERIODS, rng)
            for side in SIDES
        }
        self._input_phases = {side: tuple(rng.uniform(0.0, _TWO_PI, 4)) for side in SIDES}
        self.tasks = tasks
        self._last: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}

    def _part(self, part: str, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows px, py, pz, yaw, pitch, roll of ``part`` and their rates: free-running plus the task's offsets.

        The last answer per part is kept: one frame asks for the head and each controller several times (the
        hands and the cameras are built on them). Callers never modify the arrays.
        """
        last = self._last.get(part)
        if last is not None and last[0] == t:
            return last[1], last[2]
        value, rate = self._head(t) if part == "head" else self._controllers[part](t)
        if self.tasks is not None:
            offset, offset_rate = self.tasks.offsets(part, t)
            value, rate = value + offset, rate + offset_rate
        self._last[part] = (t, value, rate)
        return value, rate

    def head_angles(self, t: float) -> tuple[float, float, float]:
        """Yaw, pitch and roll of the head (rad); the camera pans its background by yaw and pitch."""
        value, _ = self._part("head", t)
        return float(value[3]), float(value[4]), float(value[5])

    def head_pose(self, t: float) -> np.ndarray:
        """POSE_FIELDS of the head at ``t``, (13,) float64."""
        value, rate = self._part("head", t)
        quat, omega = _euler_chain((_Y, _X, _Z), value[3:].tolist(), rate[3:].tolist())
        return np.array([*(_HEAD_BASE + value[:3]), *quat, *rate[:3], *omega])

    def controller_pose(self, side: str, t: float) -> np.ndarray:
        """POSE_FIELDS of a controller: a loop around a point in front of the head that turns with the head."""
        check_side(side)
        head, head_rate = self._part("head", t)
        value, rate = self._part(side, t)
        yaw, yaw_rate = float(head[3]), float(head_rate[3])
        yaw_quat = _axis_q(_Y, yaw)
        ax, ay, az = _qrot(yaw_quat, tuple((_CONTROLLER_BASE[side] + value[:3]).tolist()))
        dx, dy, dz = _qrot(yaw_quat, tuple(rate[:3].tolist()))
        # d/dt (R_y(yaw)·o) = R_y(yaw)·o' + yaw'·(e_y × R_y(yaw)·o), and e_y × (ax, ay, az) = (az, 0, -ax)
        vx, vy, vz = head_rate[:3].tolist()
        velocity = (vx + dx + yaw_rate * az, vy + dy, vz + dz - yaw_rate * ax)
        angles, rates = [yaw, *value[3:].tolist()], [yaw_rate, *rate[3:].tolist()]
        quat, omega = _euler_chain((_Y, _Y, _X, _Z), angles, rates)
        return np.array([*(_HEAD_BASE + head[:3] + (ax, ay, az)), *quat, *velocity, *omega])

    def controls(self, side: str, t: float) -> np.ndarray:
        """CONTROL_FIELDS at ``t``, (8,): smooth analog values and buttons from BUTTON_SCHEDULES."""
        check_side(side)
        periods, phases = _INPUT_PERIODS[side], self._input_phases[side]
        trigger, squeeze, radius = (
            0.5 - 0.5 * math.cos(_TWO_PI * t / periods[i] + phases[i]) for i in range(3)
        )
        angle = _TWO_PI * t / periods[3] + phases[3]
        radius *= _STICK_MAX_RADIUS
        buttons = [float(BUTTON_SCHEDULES[name].is_pressed(side, t)) for name in CONTROL_FIELDS[4:]]
        return np.array([trigger, squeeze, radius * math.cos(angle), radius * math.sin(angle), *buttons])

    def hand_joints(self, side: str, t: float) -> np.ndarray:
        """(26, 8) HAND_FIELDS in the stage frame: a hand holding the controller.

        The index finger curls with the trigger, middle/ring/little with the squeeze and the thumb with their
        mean, so a recorder test can check that hand and controller streams agree.
        """
        pose = self.controller_pose(side, t)
        inputs = self.controls(side, t)
        trigger, squeeze = inputs[0], inputs[1]
        curls = np.array([0.5 * (trigger + squeeze), trigger, squeeze, squeeze, squeeze])
        hand = _HANDS[side]
        local_pos, local_quat = hand.local_joints(curls)
        grip_quat = pose[3:7]
        wrist = pose[:3] + _qrot(tuple(grip_quat.tolist()), _WRIST_IN_GRIP)
        out = np.empty((len(HAND_JOINTS), len(HAND_FIELDS)))
        out[:, :3] = wrist + quat_rotate(grip_quat, local_pos)
        out[:, 3:7] = quat_mul(grip_quat, local_quat)
        out[:, 7] = hand.radius
        return out
