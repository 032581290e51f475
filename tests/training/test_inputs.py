"""The derived inputs: the instruction in force at every step (replay/active_text.py) and the motion features
(training/motion.py), checked against values computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from replay.active_text import active_window, last_event
from replay.dataset import SessionDataset, collate
from training.motion import MotionStats
from training.targets import PART_DIM, PARTS, TargetBuilder


def test_last_event_and_window_hold_the_instruction_from_when_it_was_said() -> None:
    mask = np.array([False, False, True, False, False, True, False])
    assert last_event(mask).tolist() == [-1, -1, 2, 2, 2, 5, 5]
    tokens = np.zeros((7, 4), np.int32)
    tokens[2] = [1, 10, 11, 2]
    tokens[5] = [1, 20, 2, 0]
    rows, age, have = active_window(tokens, last_event(mask), 1, 5)  # steps 1..5
    assert have.tolist() == [False, True, True, True, True]
    assert age.tolist() == [0, 0, 1, 2, 0]
    assert rows[0].tolist() == [0, 0, 0, 0] and rows[1].tolist() == [1, 10, 11, 2]
    assert rows[3].tolist() == [1, 10, 11, 2] and rows[4].tolist() == [1, 20, 2, 0]


def test_dataset_gives_the_instruction_said_before_the_window(sim_data: Path) -> None:
    """A window that starts after the instruction still sees it, with its age counted from when it was said."""
    ds = SessionDataset(
        sim_data, split="train", window=16, stride=4, modalities=["pose", "text", "text.active"]
    )
    name = next(n for n in ds.sessions if n == "sim-text")
    shard = ds._shard(name)
    said = np.nonzero(np.asarray(shard["text.internal.mask"]))[0]
    assert len(said) > 0
    first = int(said[0])
    index = next(i for i, (n, start, _) in enumerate(ds.windows) if n == name and start > first)
    _, start, length = ds.windows[index]
    item = ds[index]
    steps = np.arange(start, start + length)
    last = np.array([said[said <= s].max() if (said <= s).any() else -1 for s in steps])
    assert item["text.active.mask"].tolist() == (last >= 0).tolist()
    assert item["text.active.age"].tolist() == np.where(last >= 0, steps - last, 0).tolist()
    j = int(np.argmax(last >= 0))
    assert item["text.active"][j].tolist() == np.asarray(shard["text.internal"][last[j]]).tolist()
    # the batched path gives the same as the one-window path
    batch = collate(ds.__getitems__([index, 0]))
    for key in ("text.active", "text.active.age", "text.active.mask"):
        assert torch.equal(batch[key][0, :length], item[key])


def _builder(scale: float) -> TargetBuilder:
    norm = {
        "pose": {"mean": [[0.5] * 7] * 3, "std": [[2.0] * 7] * 3},
        "hands": {"mean": [[[0.0] * 7] * 26] * 2, "std": [[[1.0] * 7] * 26] * 2},
    }
    return TargetBuilder(2, norm, {"animation": [[[scale] * 7] * 55] * 2})


def test_motion_features_are_velocity_and_acceleration_in_step_scale_units() -> None:
    b, t = 1, 4
    raw = torch.zeros(b, t, 3, 7)
    raw[..., 6] = 1.0  # identity rotations
    raw[0, :, 0, 0] = torch.tensor([0.0, 0.01, 0.03, 0.06])  # head x: velocity 1, 2, 3 cm per step
    batch = {
        "pose": (raw - 0.5) / 2.0,  # z-scored as the Dataset does
        "pose.mask": torch.ones(b, t, 3, dtype=torch.bool),
        "step_mask": torch.ones(b, t, dtype=torch.bool),
    }
    stats = MotionStats()
    stats.set_from(_builder(0.01))  # one-step RMS change: 1 cm
    found = stats.features(batch, frozenset())
    assert found is not None
    feats, mask = found
    assert feats.shape == (b, t, PARTS, 2 * PART_DIM)
    assert torch.allclose(feats[0, :, 0, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]), atol=1e-4)
    assert torch.allclose(feats[0, :, 0, PART_DIM], torch.tensor([0.0, 0.0, 1.0, 1.0]), atol=1e-4)
    assert mask[0, :, 0].tolist() == [False, True, True, True]  # step 0 has no previous step
    assert not mask[0, :, 3:].any()  # no hands in the batch: masked
    batch["pose.mask"][0, 2, 0] = False  # a dropout: no velocity at it nor just after it
    feats, mask = stats.features(batch, frozenset())  # type: ignore[misc]
    assert mask[0, :, 0].tolist() == [False, True, False, False]
    assert float(feats[0, 3, 0].abs().sum()) == 0.0
    assert stats.features(batch, frozenset({"pose"})) is None
