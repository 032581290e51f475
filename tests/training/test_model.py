"""The model's promises on synthetic batches shaped per docs/TENSORS.md: causal, masked-not-zeroed, shapes."""

from __future__ import annotations

import torch

from training.config import LossWeights, ModelConfig
from training.losses import compute_losses
from training.model import build_model

CFG = ModelConfig(
    d_model=32, n_layers=2, n_heads=4, max_window=8, camera_height=32, camera_width=32, text_len=12
)


def synthetic_batch(b: int = 2, t: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of a Dataset batch with random values and all masks True."""
    g = torch.Generator().manual_seed(seed)
    ones = torch.ones(b, t, dtype=torch.bool)
    batch = {
        "pose": torch.randn(b, t, 3, 7, generator=g), "pose.mask": torch.ones(b, t, 3, dtype=torch.bool),
        "hands": torch.randn(b, t, 2, 26, 7, generator=g), "hands.mask": torch.ones(b, t, 2, dtype=torch.bool),
        "controls": torch.rand(b, t, 2, 8, generator=g), "controls.mask": torch.ones(b, t, 2, dtype=torch.bool),
        "audio.mel": torch.randn(b, t, 3, 80, generator=g), "audio.mask": ones.clone(),
        "step_mask": ones.clone(),
    }  # fmt: skip
    for cam in CFG.cameras:
        batch[f"camera.{cam}"] = torch.rand(b, t, 3, 32, 32, generator=g) * 2 - 1
        batch[f"camera.{cam}.mask"] = ones.clone()
    for key in ("text.internal", "text.external"):
        batch[key] = torch.randint(3, 259, (b, t, 12), generator=g)
        batch[f"{key}.mask"] = ones.clone()
    return batch


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(CFG).eval()


def test_output_shapes() -> None:
    out = model()(synthetic_batch())
    assert out["animation"].shape == (2, 7, 3 * 7 + 2 * 26 * 7)
    assert out["audio"].shape == (2, 7, 3 * 80)
    logits, targets = out["internal_text"]
    assert logits.shape == (14, 12, 259) and targets.shape == (14, 12)


def test_causal_future_steps_do_not_change_past_predictions() -> None:
    m, batch = model(), synthetic_batch()
    with torch.no_grad():
        before = m(batch)["audio"]
        changed = dict(batch)
        changed["audio.mel"] = batch["audio.mel"].clone()
        changed["audio.mel"][:, 5:] += 10.0
        after = m(changed)["audio"]
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)  # steps 0..4 predict from steps <= 4
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_masked_values_are_ignored_not_read_as_zeros() -> None:
    """Under a False mask the value means nothing: garbage there must give the same output as zeros."""
    m = model()
    a, b = synthetic_batch(), synthetic_batch()
    for batch, fill in ((a, 0.0), (b, 123.0)):
        batch["audio.mask"][:, 3] = False
        batch["audio.mel"][:, 3] = fill
        batch["camera.left.mask"][:, 2] = False
        batch["camera.left"][:, 2] = fill
        batch["pose.mask"][:, 4, 1] = False
        batch["pose"][:, 4, 1] = fill
    with torch.no_grad():
        assert torch.allclose(m(a)["audio"], m(b)["audio"], atol=1e-6)
        # and absent is not the same as a real zero: the "missing" embedding is used instead
        c = synthetic_batch()
        c["audio.mel"][:, 3] = 0.0
        assert not torch.allclose(m(a)["audio"][:, 3], m(c)["audio"][:, 3])


def test_losses_count_only_recorded_targets() -> None:
    m, batch = model(), synthetic_batch()
    weights = LossWeights().as_dict()
    batch["audio.mask"][:] = False  # no recorded audio at all
    batch["text.external.mask"][:] = False
    total, losses = compute_losses(m(batch), batch, weights)
    assert losses["audio"].item() == 0.0 and losses["external_text"].item() == 0.0
    assert losses["animation"].item() > 0 and losses["internal_text"].item() > 0
    assert abs(total.item() - sum(v.item() for v in losses.values())) < 1e-4
    total.backward()  # still one graph: every trainable parameter gets a gradient (zeros where no target)
    assert all(p.grad is not None for p in m.parameters())


def test_missing_modality_entirely_absent_from_batch() -> None:
    batch = synthetic_batch()
    for key in [k for k in batch if k.startswith(("camera.", "audio."))]:
        del batch[key]
    out = model()(batch)
    assert torch.isfinite(out["animation"]).all()
