"""The simulated person's tasks: what they are told (instruction), what they say (transcript), how they move.

Why: a model can only show that it learns from text if the text says something the motion needs. The sim
therefore performs a sequence of tasks drawn by its seed from ``TASK_KINDS``; each task is announced by an
instruction (internal text) ``lead_s`` before its motion starts, so no rule that only looks at past motion can
know what comes. The transcript is what the person says about it (external text, spoken by capture/sim_speech.py);
the instruction determines it, so the pair is learnable.

Everything is a function of (seed, t): task ``i`` draws its parameters from its own generator
``default_rng([seed, TASK_STREAM, i])`` and starts where task ``i - 1`` ends, so the schedule is extended lazily
and never depends on the order of questions asked. Motion offsets are piecewise minimum-jerk curves (zero
velocity and acceleration at every keyframe) with analytic derivatives, added to the free-running motion of
capture/sim_motion.py in the same head-yaw frame.

    one task:   instruction ── lead_s ──► motion_start ════ motion ════► motion_end ── rest ──► next task
                      └─ speech starts SPEECH_DELAY_S later (words avoid the calibration tones); the next
                         task also waits until NARRATION_PAUSE_S after the last word
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

TASK_STREAM = 0x7A5C  # second word of every task generator's seed: keeps task draws apart from motion phases
FIRST_TASK_S = (0.2, 0.6)  # the first instruction comes this soon (uniform range, s)
LEAD_S = (0.45, 0.75)  # instruction -> motion start
MOTION_S = (1.6, 2.4)  # how long a task's motion lasts (idle: its rest)
REST_S = (0.4, 0.8)  # motion end -> next instruction
NARRATION_PAUSE_S = 0.3  # with speech: the next instruction comes at least this long after the last word
SPEECH_DELAY_S = (
    0.15  # with speech: instruction -> first word of the narration (later if a tone is in the way)
)
EPISODE_S = 60  # tasks are drawn in independent episodes of this many seconds (an integer: exact in samples)
_EPISODE_CACHE = 8  # episodes kept drawn: a long recording reads them in order
SCALE = (0.8, 1.2)  # per-task size of the movement
PARTS = ("head", "left", "right")  # rows: px, py, pz (head-yaw frame, m), yaw, pitch, roll (rad)
ZERO6 = np.zeros(6)

# (instruction, transcript) pairs: the seed picks one per task; "{side}" is the hand, "{dir}" a direction.
_PHRASES: dict[str, tuple[tuple[str, str], ...]] = {
    "reach_left": (
        ("reach left with your left hand", "okay reaching to the left"),
        ("reach out to the left", "my left hand goes out"),
    ),
    "reach_right": (
        ("reach right with your right hand", "okay reaching to the right"),
        ("reach out to the right", "my right hand goes out"),
    ),
    "reach_up": (
        ("reach up with your {side} hand", "my {side} hand goes up"),
        ("raise your {side} hand", "reaching up high now"),
    ),
    "reach_forward": (
        ("reach forward with your {side} hand", "pushing my {side} hand forward"),
        ("push your {side} hand forward", "{side} hand going forward"),
    ),
    "pick_and_place": (
        ("pick up the cube with your {side} hand and move it over", "picking up the cube now"),
        ("move the cube across with your {side} hand", "moving the cube over there"),
    ),
    "wave": (
        ("wave with your {side} hand", "hello there everyone"),
        ("wave hello with your {side} hand", "hi there nice to meet you"),
    ),
    "point": (
        ("point ahead with your {side} hand", "look over there please"),
        ("point forward with your {side} hand", "that one over there"),
    ),
    "look_at": (
        ("look to the {dir}", "looking over to the {dir}"),
        ("turn your head {dir}", "what is over on the {dir}"),
    ),
    "idle": (("rest for a moment", "just resting for a moment"), ("stay still", "staying still for now")),
}
TASK_KINDS: tuple[str, ...] = tuple(_PHRASES)
_ONE_HAND = {"reach_left": "left", "reach_right": "right"}
_LOOK_DIRS = ("left", "right", "up")


@dataclass(frozen=True)
class _Curve:
    """``vector * w(tau)`` on one part, w piecewise minimum-jerk through ``(tau, w)`` keyframes (tau in 0..1);
    with ``wave_hz`` the vector also oscillates: ``vector * w(tau) * sin(2 pi wave_hz (t - motion_start))``."""

    part: str
    vector: np.ndarray  # (6,)
    keys: tuple[tuple[float, float], ...]
    wave_hz: float = 0.0


@dataclass(frozen=True)
class Task:
    """One task of the schedule; times in seconds since the recording started."""

    episode: int  # see TaskSchedule
    index: int  # within the episode
    kind: str  # one of TASK_KINDS
    side: str  # the hand that moves ("left"/"right"); for look_at and idle the hand that would have
    direction: str  # look_at: "left", "right" or "up"; else ""
    instruction: str  # internal text, at start_s
    transcript: str  # external text, spoken from the first word's start (see capture/sim_speech.py)
    start_s: float  # when the instruction is given
    motion_start_s: float
    motion_end_s: float
    end_s: (
        float  # end of the rest; the next task starts then, or NARRATION_PAUSE_S after this one's narration
    )
    scale: float
    curves: tuple[_Curve, ...] = field(repr=False, default=())


def _minjerk(u: float) -> tuple[float, float]:
    """s(u) = 10u³ − 15u⁴ + 6u⁵ and ds/du: 0 → 1 with zero velocity and acceleration at both ends."""
    u2 = u * u
    return u2 * u * (10.0 - 15.0 * u + 6.0 * u2), 30.0 * u2 * (1.0 - 2.0 * u + u2)


def _weight(keys: tuple[tuple[float, float], ...], tau: float) -> tuple[float, float]:
    """Keyframed weight and its derivative with respect to tau."""
    for (t0, w0), (t1, w1) in itertools.pairwise(keys):
        if t0 <= tau <= t1:
            s, ds = _minjerk((tau - t0) / (t1 - t0))
            return w0 + (w1 - w0) * s, (w1 - w0) * ds / (t1 - t0)
    return 0.0, 0.0


def _vec(px: float = 0.0, py: float = 0.0, pz: float = 0.0, yaw: float = 0.0, pitch: float = 0.0,
         roll: float = 0.0) -> np.ndarray:  # fmt: skip
    return np.array([px, py, pz, yaw, pitch, roll])


_HOLD = ((0.0, 0.0), (0.3, 1.0), (0.7, 1.0), (1.0, 0.0))  # go, hold, come back


def _curves(kind: str, side: str, direction: str, scale: float) -> tuple[_Curve, ...]:
    """The movement of one task, in offsets from the free-running pose (head-yaw frame, metres, radians)."""
    sign = -1.0 if side == "left" else 1.0  # +X is the right-hand side
    s = scale
    if kind in ("reach_left", "reach_right"):
        return (
            _Curve(side, _vec(sign * 0.22 * s, 0.10 * s, -0.10 * s), _HOLD),
            _Curve("head", _vec(yaw=-sign * 0.15 * s), _HOLD),  # a glance toward the hand
        )
    if kind == "reach_up":
        return (_Curve(side, _vec(0.0, 0.36 * s, -0.05 * s, pitch=0.4 * s), _HOLD),)
    if kind == "reach_forward":
        return (_Curve(side, _vec(0.0, 0.15 * s, -0.22 * s), _HOLD),)
    if kind == "pick_and_place":
        pick = ((0.0, 0.0), (0.3, 1.0), (0.4, 1.0), (0.7, 0.0))
        place = ((0.3, 0.0), (0.4, 0.0), (0.7, 1.0), (0.8, 1.0), (1.0, 0.0))
        return (
            _Curve(side, _vec(sign * 0.04 * s, -0.12 * s, -0.16 * s), pick),
            _Curve(side, _vec(-sign * 0.22 * s, -0.08 * s, -0.14 * s), place),
            _Curve("head", _vec(pitch=-0.12 * s), _HOLD),  # looking down at the table
        )
    if kind == "wave":
        raise_keys = ((0.0, 0.0), (0.25, 1.0), (0.75, 1.0), (1.0, 0.0))
        return (
            _Curve(side, _vec(sign * 0.10 * s, 0.33 * s, 0.02), raise_keys),
            _Curve(side, _vec(0.07 * s, roll=0.5 * s), raise_keys, wave_hz=2.0),
        )
    if kind == "point":
        return (
            _Curve(side, _vec(sign * 0.02, 0.17 * s, -0.22 * s, pitch=0.5 * s), _HOLD),
            _Curve("head", _vec(pitch=0.08 * s), _HOLD),
        )
    if kind == "look_at":
        turn = {"left": _vec(yaw=0.45 * s), "right": _vec(yaw=-0.45 * s), "up": _vec(pitch=0.17 * s)}
        return (_Curve("head", turn[direction] / max(s, 1.0), _HOLD),)  # never past the documented range
    return ()


# The largest head turns tasks add, for the range the camera's panorama must cover (capture/sim_motion.py).
TASK_MAX_YAW_RAD = 0.45
TASK_MAX_PITCH_RAD = 0.17


class Narrator(Protocol):
    """Says a task's transcript (capture/sim_speech.py): places its words on the microphone's sample grid."""

    rate_hz: int

    def place(self, task: Task, after: int) -> list[Any]:
        """The words of ``task.transcript``, each with ``start`` and ``length`` in samples, the first one
        starting at or after sample ``after``."""


@dataclass
class Episode:
    """``EPISODE_S`` seconds of tasks, drawn on their own: any time can be asked for without drawing the past."""

    tasks: list[Task]
    words: list[Any]  # the narrator's words of every task, in order (empty without a narrator)
    word_starts: list[int]  # their first samples, for bisect
    first_word: list[int]  # per task: the index of its first word
    motion_starts: list[float]  # per task, for bisect


class TaskSchedule:
    """The seed's tasks, drawn episode by episode on demand; ``offsets(part, t)`` is a part's task motion.

    Episode ``e`` covers [e * EPISODE_S, (e + 1) * EPISODE_S); task ``i`` in it draws from
    ``default_rng([seed, TASK_STREAM, e, i])``, and a task that would not end (narration included) before the
    episode does is left out, so nothing crosses an episode boundary.
    """

    def __init__(self, seed: int, narrator: Narrator | None = None) -> None:
        self.seed = seed
        self.narrator = narrator  # with one, each task waits until NARRATION_PAUSE_S after the last word
        self._episodes: dict[int, Episode] = {}

    def episode(self, number: int) -> Episode:
        found = self._episodes.get(number)
        if found is None:
            if len(self._episodes) >= _EPISODE_CACHE:
                self._episodes.pop(next(iter(self._episodes)))
            found = self._episodes[number] = self._draw_episode(number)
        return found

    def until(self, t_end: float) -> list[Task]:
        """Every task whose instruction comes before ``t_end`` seconds."""
        last = math.floor(max(t_end, 0.0) / EPISODE_S)
        return [task for e in range(last + 1) for task in self.episode(e).tasks if task.start_s < t_end]

    def active(self, t: float) -> Task | None:
        """The task whose motion is running at ``t`` (None between motions)."""
        if t < 0:
            return None
        tasks = self.episode(math.floor(t / EPISODE_S)).tasks
        i = bisect.bisect_right(self.episode(math.floor(t / EPISODE_S)).motion_starts, t) - 1
        return tasks[i] if i >= 0 and t < tasks[i].motion_end_s else None

    def offsets(self, part: str, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(6,) offsets of px, py, pz, yaw, pitch, roll for ``part`` and their time derivatives."""
        task = self.active(t)
        if task is None or not task.curves:
            return ZERO6, ZERO6
        duration = task.motion_end_s - task.motion_start_s
        tau = (t - task.motion_start_s) / duration
        value, rate = np.zeros(6), np.zeros(6)
        for curve in task.curves:
            if curve.part != part:
                continue
            w, dw = _weight(curve.keys, tau)
            dw /= duration
            if curve.wave_hz:
                omega = 2.0 * math.pi * curve.wave_hz
                phase = omega * (t - task.motion_start_s)
                w, dw = w * math.sin(phase), dw * math.sin(phase) + w * omega * math.cos(phase)
            value += curve.vector * w
            rate += curve.vector * dw
        return value, rate

    def _draw_episode(self, number: int) -> Episode:
        episode = Episode([], [], [], [], [])
        end = (number + 1) * EPISODE_S
        start = number * EPISODE_S + float(
            np.random.default_rng([self.seed, TASK_STREAM, number]).uniform(*FIRST_TASK_S)
        )
        narrator = self.narrator
        for index in itertools.count():
            task = self._draw(number, index, start)
            words: list[Any] = []
            finish = task.end_s
            if narrator is not None:
                words = narrator.place(task, round((task.start_s + SPEECH_DELAY_S) * narrator.rate_hz))
                last = words[-1]
                finish = max(finish, (last.start + last.length) / narrator.rate_hz + NARRATION_PAUSE_S)
            if finish > end:
                return episode
            episode.tasks.append(task)
            episode.motion_starts.append(task.motion_start_s)
            episode.first_word.append(len(episode.words))
            episode.words += words
            episode.word_starts += [w.start for w in words]
            start = finish
        raise AssertionError("unreachable")

    def _draw(self, episode: int, index: int, start: float) -> Task:
        rng = np.random.default_rng(
            [self.seed, TASK_STREAM, episode, index]
        )  # draw order is part of the format
        kind = TASK_KINDS[int(rng.integers(len(TASK_KINDS)))]
        side = _ONE_HAND.get(kind, ("left", "right")[int(rng.integers(2))])
        direction = _LOOK_DIRS[int(rng.integers(3))] if kind == "look_at" else ""
        instruction, transcript = _PHRASES[kind][int(rng.integers(len(_PHRASES[kind])))]
        lead, motion, rest, scale = (float(rng.uniform(*r)) for r in (LEAD_S, MOTION_S, REST_S, SCALE))
        motion_start = start + lead
        motion_end = motion_start + motion
        return Task(
            episode=episode,
            index=index,
            kind=kind,
            side=side,
            direction=direction,
            instruction=instruction.format(side=side, dir=direction),
            transcript=transcript.format(side=side, dir=direction),
            start_s=start,
            motion_start_s=motion_start,
            motion_end_s=motion_end,
            end_s=motion_end + rest,
            scale=scale,
            curves=_curves(kind, side, direction, scale),
        )
