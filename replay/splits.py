"""Which steps of which sessions are train, val and test.

Two rules, and the manifest says which one drew the split (``split_rule.mode``):

- ``sessions``: with at least ``split.min_sessions`` sessions (default 10), whole sessions go to a split. Sessions
  are ranked by a hash of (salt, name), stable on any machine, and cut by count: val and test each get
  ``max(1, round(fraction x n))`` sessions, train the rest. Cutting by count (not by comparing each hash with
  0.8 and 0.9) is what keeps a small split from being silently empty: 12 sessions hashed one by one leave test
  empty about one time in four.
- ``time_blocks``: with fewer sessions, every session is cut into contiguous blocks in time order —
  train (80%), a gap, val (10%), a gap, test (10%). The gap (``split.gap_steps``, default 64 steps) is at least
  one training window, so no window (inputs or future targets) reaches across two splits. The ranges are in
  ``split_ranges`` as ``{split: {session: [[start, end), ...]}}``; the Dataset cuts windows inside them only.

Whatever the rule, a split that ends up empty is named in the manifest's notes with the reason, and
``SessionDataset.describe`` repeats it, so training refuses with a reason instead of evaluating nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from replay.config import SplitConfig

SPLITS = ("train", "val", "test")


@dataclass
class SplitAssignment:
    mode: str  # "sessions" or "time_blocks"
    sessions: dict[str, list[str]]  # split -> session names holding steps of it
    ranges: dict[str, dict[str, list[list[int]]]] = field(default_factory=dict)  # time_blocks only
    notes: list[str] = field(default_factory=list)

    def split_of(self, name: str) -> str:
        """The session's split ("train", "val", "test"), or "blocks" when its steps are spread over several."""
        if self.mode == "time_blocks":
            return "blocks"
        return next(s for s in SPLITS if name in self.sessions[s])

    def rule(self, config: SplitConfig) -> dict[str, Any]:
        by = (
            "whole sessions ranked by sha256(salt NUL name), cut by count (val, test >= 1)"
            if self.mode == "sessions"
            else "contiguous time blocks in each session (train, gap, val, gap, test)"
        )
        return {"mode": self.mode, "by": by, **{k: getattr(config, k) for k in config.__dataclass_fields__}}


def hash_rank(name: str, salt: str) -> float:
    """A number in [0, 1) drawn from the name: the same name and salt give the same number anywhere."""
    digest = hashlib.sha256(f"{salt}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _count(fraction: float, n: int) -> int:
    return 0 if fraction <= 0 else max(1, round(fraction * n))


def by_session(names: list[str], config: SplitConfig) -> SplitAssignment:
    ranked = sorted(names, key=lambda n: (hash_rank(n, config.salt), n))
    n_val, n_test = _count(config.val, len(ranked)), _count(config.test, len(ranked))
    n_train = len(ranked) - n_val - n_test
    sessions = {
        "train": sorted(ranked[:n_train]),
        "val": sorted(ranked[n_train : n_train + n_val]),
        "test": sorted(ranked[n_train + n_val :]),
    }
    return SplitAssignment("sessions", sessions)


def block_ranges(steps: int, config: SplitConfig) -> dict[str, list[int]]:
    """[start, end) of each split inside one session of ``steps`` steps; a split with no room is absent."""
    gap = config.gap_steps
    parts = [(s, getattr(config, s)) for s in SPLITS if getattr(config, s) > 0]
    usable = steps - gap * (len(parts) - 1)
    out: dict[str, list[int]] = {}
    if usable < len(parts):
        return out
    start = 0
    total = sum(f for _, f in parts)
    sizes = [int(usable * f / total) for _, f in parts]
    sizes[0] += usable - sum(sizes)  # rounding leftovers go to train
    for (split, _), size in zip(parts, sizes, strict=True):
        if size > 0:
            out[split] = [start, start + size]
        start += size + gap
    return out


def by_time_blocks(steps: dict[str, int], config: SplitConfig) -> SplitAssignment:
    ranges: dict[str, dict[str, list[list[int]]]] = {s: {} for s in SPLITS}
    for name in sorted(steps):
        for split, span in block_ranges(steps[name], config).items():
            ranges[split][name] = [span]
    sessions = {s: sorted(ranges[s]) for s in SPLITS}
    return SplitAssignment("time_blocks", sessions, ranges)


def assign(steps: dict[str, int], config: SplitConfig) -> SplitAssignment:
    """The split of every converted session (name -> its step count), with notes for every empty split."""
    names = sorted(steps)
    result = by_session(names, config) if len(names) >= config.min_sessions else by_time_blocks(steps, config)
    for split in SPLITS:
        if result.sessions[split] or getattr(config, split) <= 0 or not names:
            continue
        if result.mode == "sessions":
            reason = f"{len(names)} sessions leave none for it"
        else:
            longest = max(steps.values())
            reason = (
                f"{len(names)} session(s) (< split.min_sessions={config.min_sessions}) are cut into time blocks "
                f"with gaps of split.gap_steps={config.gap_steps}, and the longest has only {longest} steps; "
                "record longer sessions or lower split.gap_steps (not below the training window)"
            )
        result.notes.append(f"split {split!r} is empty: {reason}")
    return result
