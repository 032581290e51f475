"""The instruction in force at every step: the most recent internal text event at or before it, and its age.

Why: an instruction is one text event at one step, said 15-22 steps before the motion it announces and often
before the window that holds the motion starts. A model that only sees the step it was said at must carry it
across the window by attention, and cannot see it at all when it was said before the window. Like LeRobot's
per-frame ``task``, each step therefore also gets the instruction that is *active*: its tokens, how many steps
ago it was said (so the model can time the motion it announces), and a mask that is False until the first
instruction of the session. It is derived from ``text.internal`` when a window is read; shards are unchanged.

    text.active       int64 [T, L]  tokens of the last text.internal event at or before the step (0 where none)
    text.active.age   int64 [T]     steps since it was said (0 at its own step), 0 where none
    text.active.mask  bool  [T]     True once the session has had an instruction
"""

from __future__ import annotations

import numpy as np

SOURCE = ("text.internal", "text.internal.mask")
NAMES = ("text.active", "text.active.age", "text.active.mask")


def last_event(mask: np.ndarray) -> np.ndarray:
    """For each step of a session, the index of the last step at or before it whose mask is set, -1 if none."""
    steps = np.arange(len(mask), dtype=np.int64)
    return np.maximum.accumulate(np.where(np.asarray(mask, bool), steps, -1)) if len(mask) else steps


def active_window(
    tokens: np.ndarray, last: np.ndarray, start: int, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, age, mask) of steps ``start .. start + length`` from the session's ``text.internal`` rows and
    ``last_event`` of its mask."""
    src = last[start : start + length]
    have = src >= 0
    rows = np.asarray(tokens[np.where(have, src, 0)], dtype=np.int64)
    rows[~have] = 0
    age = np.where(have, np.arange(start, start + len(src)) - src, 0).astype(np.int64)
    return rows, age, have
