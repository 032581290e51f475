"""The model's promises on synthetic batches shaped per docs/TENSORS.md: causal, masked-not-zeroed, shapes."""

from __future__ import annotations

import torch

from training.config import LossWeights, ModelConfig
from training.losses import compute_losses
from training.model import build_model
from training.targets import TargetBuilder

CFG = ModelConfig(
    d_model=32, n_layers=2, n_heads=4, max_window=8, camera_height=32, camera_width=32, text_len=12, horizon=3
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
        batch[key][..., 0] = 1  # bos: every step holds text
        batch[f"{key}.mask"] = ones.clone()
    batch["text.active"] = batch["text.internal"][:, :1].expand(b, t, -1).clone()  # said at step 0
    batch["text.active.age"] = torch.arange(t).expand(b, t).clone()
    batch["text.active.mask"] = ones.clone()
    return batch


def model(zero_heads: bool = False) -> torch.nn.Module:
    """The model; unless ``zero_heads``, its zero-initialised heads get random weights, as after training, so
    that the tests below can see inputs reach the outputs."""
    torch.manual_seed(0)
    m = build_model(CFG).eval()
    if not zero_heads:
        for name in ("animation", "audio"):
            torch.nn.init.normal_(m.heads[name].weight, std=0.02)
    return m


def builder(k: int = CFG.horizon) -> TargetBuilder:
    """Target statistics for synthetic batches: unit normalisation and unit change scales."""
    norm = {
        "pose": {"mean": [[0.0] * 7] * 3, "std": [[1.0] * 7] * 3},
        "hands": {"mean": [[[0.0] * 7] * 26] * 2, "std": [[[1.0] * 7] * 26] * 2},
        "audio.mel": {"mean": [0.0] * 80, "std": [1.0] * 80},
    }
    scales = {"animation": [[[1.0] * 7] * 55] * k, "audio": [[[1.0] * 80] * 3] * k}
    return TargetBuilder(k, norm, scales)


def test_output_shapes() -> None:
    out = model()(synthetic_batch())
    assert out["animation"].shape == (2, 8, CFG.horizon, 3 * 7 + 2 * 26 * 7)
    assert out["audio"].shape == (2, 8, CFG.horizon, 3 * 80)
    text = out["internal_text"]
    assert text["first"].shape == (14, 259) and text["logits"].shape == (14, 12, 259)


def test_untrained_heads_predict_no_change() -> None:
    """Zero-initialised heads: the untrained model's animation and audio outputs are exactly "no change"."""
    out = model(zero_heads=True)(synthetic_batch())
    assert out["animation"].abs().max().item() == 0.0 and out["audio"].abs().max().item() == 0.0


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
    out = m(batch)
    total, losses = compute_losses(out, builder().build(batch), weights)
    assert losses["audio"].item() == 0.0
    # no external text: the only targets are "no text at the next step" (eos), one per step pair, no tokens
    ext = out["external_text"]
    assert ext["targets"].shape[0] == 0 and ext["first_target"].tolist() == [2] * 14
    assert (
        abs(
            losses["external_text"].item()
            - torch.nn.functional.cross_entropy(ext["first"], ext["first_target"]).item()
        )
        < 1e-5
    )
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


def test_tokens_head_learns_bins_and_decodes_in_the_same_units() -> None:
    """model.animation_head tokens: a bin is coarse x fine (8,192 = 128 x 64); its centre decodes within half a
    bin width; a few steps of cross-entropy on one batch lower the loss, and eval decodes the scored horizons."""
    from training.token_head import TokenHead

    cfg = ModelConfig(**{**CFG.__dict__, "animation_head": "tokens", "token_sample": 256})
    torch.manual_seed(0)
    m = build_model(cfg)
    head = m.heads["animation"]
    assert isinstance(head, TokenHead) and (head.coarse_n, head.fine_n) == (128, 64)
    values = torch.tensor([-5.0, -1.2345, 0.0, 0.5, 3.999])
    back = head.value_of(head.bin_of(values))
    width = 2 * 4.0 / 8192
    assert torch.all((back - values.clamp(-4, 4)).abs()[1:] <= width / 2 + 1e-6)
    assert head.bin_of(torch.tensor([-5.0, 5.0])).tolist() == [0, 8191]  # outside the range: the edge bins
    batch, b = synthetic_batch(), builder()
    targets = b.build(batch)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    first = last = 0.0
    for i in range(15):
        torch.manual_seed(1)  # the same coordinates each step: the drop is learning, not a different draw
        loss = compute_losses(m(batch), targets, LossWeights().as_dict())[1]["animation"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first, last = (loss.item(), loss.item()) if i == 0 else (first, loss.item())
    assert last < 0.9 * first, (first, last)
    assert first > 8.0  # ~ln(128) + ln(64) = 9.0 before training
    m.eval()
    head.decode_steps = [1]
    with torch.no_grad():
        out = m(batch)["animation"]
    assert out.shape == (2, 8, CFG.horizon, 385)
    assert float(out[:, :, 1].abs().sum()) > 0 and float(out[:, :, 0].abs().sum()) == 0.0
