"""Dropped frames, a failed device, a stream never declared, text events: masks at exactly those steps."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from replay import tokenizer
from replay.config import load_replay_config
from replay.convert import convert_sessions
from tests.replay.conftest import T0, write_sim_session

SKIP = set(range(60, 72)) | {150}  # 12 frames (133 ms) in a row, then a single frame
ANNOTATIONS = [
    (500_000_000, "reach for the cup", "internal"),
    (510_000_000, "ok", "internal"),
    (1_234_000_000, "hé", "external"),
]


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("masks")
    session = write_sim_session(
        root / "gaps", 2.0, skip=SKIP, drop_streams=["controller_right"], annotations=ANNOTATIONS,
        hands=False, camera_width=320, camera_height=240, tasks=False,  # the test's annotations only
    )  # fmt: skip
    out = root / "t"
    convert_sessions([session], out, load_replay_config(), progress=False, log=lambda m: None)
    return load_file(str(out / "shards" / "gaps.safetensors"))


def _frame_t(seq: int) -> int:
    return T0 + round(seq * 1e9 / 90)


def test_pose_gaps_mask_exactly_the_steps_inside(shard: dict[str, np.ndarray]) -> None:
    steps = shard["time_ns"]
    assert steps.size == 60 and steps[0] == T0  # 180 frames at 90 Hz; the last step at or before frame 179
    kept = np.array([_frame_t(s) for s in range(180) if s not in SKIP])
    left = np.searchsorted(kept, steps, side="right") - 1
    on_sample = kept[left] == steps
    gap = kept[np.minimum(left + 1, kept.size - 1)] - kept[left]
    expected = on_sample | (gap <= 1.5 * 1e9 / 90)
    masked = np.flatnonzero(~expected)
    # frames 60..71 span steps 20..23; frame 150 is step 50, and losing it leaves a 2-period gap there
    assert masked.tolist() == [20, 21, 22, 23, 50]
    assert np.array_equal(shard["pose.mask"][:, 0], expected)
    assert np.array_equal(shard["pose.mask"][:, 1], expected)
    assert not shard["pose.mask"][:, 2].any() and not shard["pose"][:, 2].any()  # declared, never recorded
    assert not shard["hands.mask"].any()  # not declared at all (hands=False)
    assert np.flatnonzero(~shard["controls.mask"][:, 0]).tolist() == [21, 22, 23]  # held up to 1.5 periods


def test_cameras_mask_the_steps_whose_frame_was_lost(shard: dict[str, np.ndarray]) -> None:
    # frame k (t = k / 30 s) travels in packet 3k; packets 60..71 and 150 carried frames 20..23 and 50
    for cam in ("left", "right"):
        assert np.flatnonzero(~shard[f"camera.{cam}.mask"]).tolist() == [20, 21, 22, 23, 50]
        frames = shard[f"camera.{cam}.frame"]
        assert frames[24] == 24 and frames[20] == -1 and not shard[f"camera.{cam}"][20].any()


def test_audio_masks_windows_with_lost_samples(shard: dict[str, np.ndarray]) -> None:
    # blocks of 10 ms ride in the first packet after they end; a lost packet loses the blocks it carried
    lost = set()
    delivered_until = 0
    for seq in range(180):
        available = round(seq * 1e9 / 90) * 48000 // 1_000_000_000
        blocks = range(delivered_until, available - available % 480, 480)
        if seq in SKIP:
            lost.update(blocks)
        delivered_until = max(delivered_until, available - available % 480)
    mask = shard["audio.mask"]
    start = shard["audio.start_index"]
    expected = []
    for k in range(60):
        first = round(k * 1600)
        window = range(first - first % 480, first + 1600, 480)
        in_range = first + 1600 <= delivered_until
        expected.append(in_range and not any(b in lost for b in window))
    assert mask.tolist() == expected
    assert (start[mask] == 1600 * np.flatnonzero(mask)).all()
    assert not shard["audio.mel"][~mask].any()


def test_text_events_land_in_their_step(shard: dict[str, np.ndarray]) -> None:
    internal, external = shard["text.internal"], shard["text.external"]
    assert np.flatnonzero(shard["text.internal.mask"]).tolist() == [15]  # 0.500 and 0.510 s: step 15
    assert np.flatnonzero(shard["text.external.mask"]).tolist() == [37]  # 1.234 s
    assert tokenizer.decode(internal[15].tolist()) == ["reach for the cup", "ok"]
    assert tokenizer.decode(external[37].tolist()) == ["hé"]
    assert (
        external[37, :5].tolist() == [1, ord("h") + 3, 0xC3 + 3, 0xA9 + 3, 2] and internal.dtype == np.int32
    )
