"""Horizon targets and eval's baselines, checked by hand on tiny fixtures with known poses."""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.training.test_model import builder, model, synthetic_batch
from training.evaluate import Evaluator, constant_velocity
from training.targets import TargetBuilder


def walking_batch(t: int = 6) -> dict[str, torch.Tensor]:
    """The head walks +1 cm per step along x and turns 2 degrees per step about z; everything else is still."""
    batch = synthetic_batch(1, t)
    pose = torch.zeros(1, t, 3, 7)
    for i in range(t):
        half = math.radians(2 * i) / 2
        pose[0, i, 0] = torch.tensor([0.01 * i, 0, 1.6, 0, 0, math.sin(half), math.cos(half)])
        pose[0, i, 1:, 6] = 1.0
    batch["pose"] = pose
    batch["hands"] = torch.zeros(1, t, 2, 26, 7)
    batch["hands"][..., 6] = 1.0
    return batch


def test_targets_are_future_changes_scaled_per_horizon() -> None:
    b = builder(3)
    b.anim_scale = torch.full_like(b.anim_scale, 0.5)  # every change is measured in units of 0.5
    batch = walking_batch()
    tg = b.build(batch)
    assert tg.animation.shape == (1, 6, 3, 385)
    # step 1, k = 2 (three steps ahead): head x moved 3 cm -> 0.03 / 0.5
    assert tg.animation[0, 1, 2, 0].item() == torch.tensor(0.06).item()
    assert (
        tg.animation_valid[0, 1, 2].all() and not tg.animation_valid[0, 3, 2].any()
    )  # step 6 is past the end


def test_masked_current_pose_is_left_out_and_quaternion_sign_does_not_matter() -> None:
    b, batch = builder(2), walking_batch()
    batch["pose.mask"][0, 2, 0] = False  # the head drops out at step 2
    flipped = {k: v.clone() for k, v in batch.items()}
    flipped["pose"][0, 3:, 0, 3:7] *= -1  # the same rotations, written as -q from step 3 on
    tg, tf = b.build(batch), b.build(flipped)
    head = tg.animation_valid[0, :, :, 0]
    assert not head[2].any()  # no change is learned from a masked current pose...
    assert not head[0, 1] and not head[1, 0]  # ...nor towards one
    assert head[3].all() and head[0, 0]
    assert torch.allclose(tg.animation, tf.animation, atol=1e-6)  # q and -q give the same targets


def test_eval_baselines_match_hand_computed_values() -> None:
    """Hold-last is off by the distance walked; constant velocity is exact on a uniform walk and turn."""
    k = 3
    b = builder(k)
    metrics = Evaluator(model(zero_heads=True), b, 30.0).run([walking_batch(8)])
    # 0.1 s = 3 steps ahead at 30 Hz: hold misses by 3 cm and 6 degrees, constant velocity by nothing
    assert abs(metrics["animation/head_pos_mm@0.1s|hold"] - 30.0) < 1e-3
    assert abs(metrics["animation/head_rot_deg@0.1s|hold"] - 6.0) < 1e-3
    assert metrics["animation/head_pos_mm@0.1s|const_vel"] < 1e-3
    assert metrics["animation/head_rot_deg@0.1s|const_vel"] < 1e-2
    # the untrained model (zero heads) predicts "no change": exactly hold-last
    assert metrics["animation/head_pos_mm@0.1s"] == metrics["animation/head_pos_mm@0.1s|hold"]
    assert "animation/head_pos_mm@0.5s" not in metrics  # beyond the model's horizon of 3 steps: not reported


def test_constant_velocity_holds_where_the_previous_pose_is_missing() -> None:
    cur = np.array([[0.1, 0, 0, 0, 0, 0, 1.0]])
    prev = np.array([[0.0, 0, 0, 0, 0, 0, 1.0]])
    assert np.allclose(constant_velocity(cur, prev, np.array([True]), 2)[0, :3], [0.3, 0, 0])
    assert np.allclose(constant_velocity(cur, prev, np.array([False]), 2), cur)


def test_target_statistics_round_trip_through_a_checkpoint_state() -> None:
    b = builder(2)
    again = TargetBuilder.from_state(b.state())
    batch = walking_batch()
    assert torch.equal(b.build(batch).animation, again.build(batch).animation)


def test_const_vel_base_starts_the_untrained_model_at_constant_velocity() -> None:
    """With model.animation_base const_vel a zero change means "keep the last step's velocity": the untrained
    model then scores what the constant-velocity baseline scores, and the targets are what is left over."""
    k = 3
    hold = builder(k)
    b = TargetBuilder(k, hold.normalization, hold.scales, "const_vel")
    batch = walking_batch(8)
    metrics = Evaluator(model(zero_heads=True), b, 30.0).run([batch])
    assert metrics["animation/head_pos_mm@0.1s"] < 1e-3  # the walk is uniform: constant velocity is exact
    assert abs(metrics["animation/head_pos_mm@0.1s|hold"] - 30.0) < 1e-3
    assert metrics["animation/head_rot_deg@0.1s"] < 0.05  # quaternions extended linearly, then renormalised
    tg = b.build(batch)
    # steps 1..4 have a previous step and all K futures inside the window
    head = tg.animation.reshape(1, 8, k, 55, 7)[0, 1:5, :, 0, :3]
    assert float(head.abs().max()) < 1e-4  # nothing left to learn on a uniform walk
    assert TargetBuilder.from_state(b.state()).base == "const_vel"
