"""`vrcap infer`: run a checkpoint over one recorded session and say how far its predictions are from what
was recorded, per output.

The session is converted with the replay config stored in the checkpoint (so the tensors have the shapes the
model was trained on) into a temporary folder, and normalized with the checkpoint's statistics (the training
set's), not the session's own: the model must see inputs scaled the way it learned them. Next to each error
stands a "hold" baseline (predict that step t+1 equals step t), the number to beat.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import default_modalities
from training.errors import CheckpointError
from training.model import build_model
from vrcap.config import build


class _Sum:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0.0

    def add(self, total: float, count: float) -> None:
        self.total += total
        self.count += count

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def _convert(session: Path, tmp: Path, dataset_info: dict[str, Any]) -> tuple[Path, str]:
    from replay.config import ReplayConfig
    from replay.convert import convert_sessions

    replay_cfg = build(ReplayConfig, dataset_info.get("config", {}))
    manifest = convert_sessions([session], tmp, replay_cfg, progress=False, log=lambda _msg: None)
    manifest["normalization"] = dataset_info.get("normalization", manifest["normalization"])
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    split = next(s for s, names in manifest["splits"].items() if names)
    return tmp, split


def infer_session(checkpoint: Path, session: Path) -> dict[str, Any]:
    from replay.dataset import SessionDataset, collate

    state = load_checkpoint(checkpoint, verify=checkpoint.with_suffix(".json").is_file())
    if "config" not in state or "dataset" not in state:
        raise CheckpointError(f"{checkpoint} is not a vrcap training checkpoint (no config or dataset info)")
    cfg = build(TrainConfig, state["config"])
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    with tempfile.TemporaryDirectory(prefix="vrcap-infer-") as tmp:
        root, split = _convert(session, Path(tmp), state["dataset"])
        manifest = json.loads((root / "manifest.json").read_text())
        window = cfg.data.window
        dataset = SessionDataset(
            root, split=split, window=window, stride=window, modalities=default_modalities(manifest)
        )
        sums = _evaluate(model, dataset, collate, state["dataset"].get("normalization", {}))
        steps = sum(int(e["steps"]) for e in manifest["sessions"].values())
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "step": int(state.get("step", 0)),
        "session": str(session),
        "steps": steps,
        "windows": len(dataset),
        "outputs": {name: {k: s.mean for k, s in values.items()} | {"targets": next(iter(values.values())).count}
                    for name, values in sums.items()},
    }  # fmt: skip
    return report


@torch.no_grad()
def _evaluate(model: Any, dataset: Any, collate: Any, norm: dict[str, Any]) -> dict[str, dict[str, _Sum]]:
    sums: dict[str, dict[str, _Sum]] = {
        "animation": {"mse": _Sum(), "hold_mse": _Sum(), "head_position_error_m": _Sum()},
        "audio": {"mse": _Sum(), "hold_mse": _Sum()},
        "internal_text": {"cross_entropy": _Sum(), "token_accuracy": _Sum()},
        "external_text": {"cross_entropy": _Sum(), "token_accuracy": _Sum()},
    }
    pose_std = torch.tensor(norm["pose"]["std"]) if "pose" in norm else None
    for start in range(0, len(dataset), 8):
        batch = collate([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
        out = model(batch)
        step = batch["step_mask"]
        valid = step[:, 1:] & step[:, :-1]
        if "pose" in batch:
            b, t = valid.shape
            m = (batch["pose.mask"][:, 1:] & valid.unsqueeze(-1)).unsqueeze(-1).float()  # (B, T-1, 3, 1)
            pred = out["animation"][..., :21].reshape(b, t, 3, 7)
            target, hold = batch["pose"][:, 1:], batch["pose"][:, :-1]
            n = float(m.sum()) * 7
            sums["animation"]["mse"].add(float(((pred - target).square() * m).sum()), n)
            sums["animation"]["hold_mse"].add(float(((hold - target).square() * m).sum()), n)
            if pose_std is not None:  # back to metres for the head (body 0): normalized diff x std
                diff = (pred[:, :, 0, :3] - target[:, :, 0, :3]) * pose_std[0, :3]
                hm = m[:, :, 0, 0]
                sums["animation"]["head_position_error_m"].add(
                    float((diff.norm(dim=-1) * hm).sum()), float(hm.sum())
                )
        if "audio.mel" in batch:
            m = (batch["audio.mask"][:, 1:] & valid).float()[..., None]
            target = batch["audio.mel"][:, 1:].flatten(2)
            hold = batch["audio.mel"][:, :-1].flatten(2)
            n = float(m.sum()) * target.shape[-1]
            sums["audio"]["mse"].add(float(((out["audio"] - target).square() * m).sum()), n)
            sums["audio"]["hold_mse"].add(float(((hold - target).square() * m).sum()), n)
        for name in ("internal_text", "external_text"):
            logits, targets = out[name]
            real = targets != 0
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            )
            sums[name]["cross_entropy"].add(float((ce * real.reshape(-1)).sum()), float(real.sum()))
            hits = (logits.argmax(-1) == targets) & real
            sums[name]["token_accuracy"].add(float(hits.sum()), float(real.sum()))
    return sums


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['session']}: {report['steps']} steps, {report['windows']} windows; checkpoint "
        f"{report['checkpoint']} (step {report['step']})",
        f"  {'output':<14} {'targets':>8}  errors (normalized units; hold = predict no change)",
    ]
    for name, values in report["outputs"].items():
        figures = "  ".join(
            f"{k} {v:.4f}" if v is not None else f"{k} -" for k, v in values.items() if k != "targets"
        )
        targets = int(values["targets"])
        lines.append(f"  {name:<14} {targets:>8}  {figures if targets else 'nothing recorded to compare'}")
    return "\n".join(lines)
