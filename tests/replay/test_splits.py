"""Split assignment (replay/splits.py): whole sessions by count when there are enough, else time blocks with
gaps; never an empty split without a note."""

from __future__ import annotations

import itertools

from replay.config import SplitConfig
from replay.splits import SPLITS, assign, block_ranges


def test_ten_sessions_split_whole_by_count_and_stably() -> None:
    steps = {f"s{i:02d}": 100 for i in range(10)}
    first = assign(steps, SplitConfig())
    assert first.mode == "sessions" and [len(first.sessions[s]) for s in SPLITS] == [8, 1, 1]
    assert first.notes == [] and first.ranges == {}
    assert assign(dict(reversed(list(steps.items()))), SplitConfig()).sessions == first.sessions
    salted = assign(steps, SplitConfig(salt="x"))
    assert salted.sessions != first.sessions
    assert sorted(n for s in SPLITS for n in salted.sessions[s]) == sorted(steps)


def test_few_sessions_become_time_blocks_one_gap_apart() -> None:
    cfg = SplitConfig(gap_steps=32)
    result = assign({"a": 1000, "b": 500}, cfg)
    assert result.mode == "time_blocks" and result.sessions == {s: ["a", "b"] for s in SPLITS}
    (train,), (val,), (test,) = (result.ranges[s]["a"] for s in SPLITS)
    # 1000 - 2 x 32 = 936 usable steps: 748 / 93 / 93 (rounding goes to train), 32-step gaps between
    assert train == [0, 750] and val == [782, 875] and test == [907, 1000]
    assert val[0] - train[1] == 32 and test[0] - val[1] == 32
    assert block_ranges(500, cfg) == {"train": [0, 350], "val": [382, 425], "test": [457, 500]}


def test_blocks_never_overlap_and_cover_what_the_fractions_say() -> None:
    cfg = SplitConfig(gap_steps=64)
    for steps in (200, 1799, 1800, 3600):
        spans = block_ranges(steps, cfg)
        ordered = [spans[s] for s in SPLITS]
        assert all(b[0] - a[1] == 64 for a, b in itertools.pairwise(ordered))
        assert ordered[-1][1] <= steps and ordered[0][0] == 0
        sizes = [b - a for a, b in ordered]
        assert abs(sizes[1] - 0.1 * (steps - 128)) <= 1 and sizes[0] >= 8 * sizes[1] - 8


def test_a_session_too_short_for_blocks_is_named_in_the_notes() -> None:
    result = assign({"short": 100}, SplitConfig(gap_steps=64))
    assert result.sessions == {s: [] for s in SPLITS}
    assert len(result.notes) == 3 and all("longest has only 100 steps" in n for n in result.notes)
