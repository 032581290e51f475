"""Collections paused while sessions convert, one per chunk instead, and the program's own setting back after
(replay/gc_pause.py); a conversion really runs with them paused and collects once per chunk."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replay import gc_pause
from replay.config import load_replay_config
from replay.convert import convert_sessions
from tests.replay.conftest import write_sim_session


@pytest.fixture
def passes() -> Iterator[list[int]]:
    """The generation of every collection that runs, automatic or asked for."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(int(info["generation"]))

    gc.callbacks.append(callback)
    try:
        yield seen
    finally:
        gc.callbacks.remove(callback)


def test_paused_while_converting_and_back_after() -> None:
    assert gc.isenabled()
    with gc_pause.collections_paused():
        with gc_pause.collections_paused():  # a second session on another thread
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first one still runs
    assert gc.isenabled()


def test_a_program_that_turned_collection_off_keeps_it_off(passes: list[int]) -> None:
    gc.disable()
    try:
        with gc_pause.collections_paused():
            gc_pause.collect_chunk()
        assert not gc.isenabled() and passes == []
    finally:
        gc.enable()


def test_each_chunk_collects_the_young_and_now_and_then_everything(passes: list[int]) -> None:
    gc_pause._chunks = 0
    with gc_pause.collections_paused():
        passes.clear()  # automatic passes before the pause are not this test's
        junk = [[i] for i in range(100_000)]  # far over the 700 allocations that start an automatic pass
        del junk
        assert passes == []  # nothing ran on its own
        for _ in range(gc_pause.FULL_EVERY):
            gc_pause.collect_chunk()
    assert passes == [1] * (gc_pause.FULL_EVERY - 1) + [2]


def test_a_conversion_collects_once_per_chunk(tmp_path: Path, passes: list[int]) -> None:
    session = write_sim_session(tmp_path / "s", 3.0, tasks=False)
    config = load_replay_config(None, ["convert.chunk_s=0.5", "convert.builder=thread"])
    gc_pause._chunks = 0
    convert_sessions([session], tmp_path / "out", config, progress=False, log=lambda m: None)
    assert gc.isenabled()
    chunks = gc_pause._chunks
    assert 6 <= chunks <= 8  # 3 s in 0.5 s chunks
    # one pass per chunk while converting; the automatic ones before and after the session may add a few
    assert passes.count(1) >= chunks
