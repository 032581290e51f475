"""`vrcap eval` (a split of a tensor folder) and `vrcap infer` (one recorded session): a checkpoint's errors in
physical units beside the baselines, through one code path (training/evaluate.py).

Eval reads the shards as they are (no re-conversion). Infer converts the session with the replay config stored
in the checkpoint (so the tensors have the shapes the model was trained on) into a temporary folder, puts every
step of it in one split, and evaluates that. Both normalise with the checkpoint's statistics (the training
set's), not the data's own: the model must see inputs scaled the way it learned them.
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
from training.evaluate import Evaluator, beyond_horizon, render_table
from training.model import DROPPABLE, build_model
from training.targets import TargetBuilder
from training.validation import eval_batches
from vrcap.config import build
from vrcap.errors import UsageError


def load_for_eval(checkpoint: Path) -> tuple[dict[str, Any], TrainConfig, Any, TargetBuilder]:
    """(checkpoint state, its config, the model in eval mode, its target statistics)."""
    state = load_checkpoint(checkpoint, verify=checkpoint.with_suffix(".json").is_file())
    if "config" not in state or "dataset" not in state or "targets" not in state:
        raise CheckpointError(
            f"{checkpoint} is not a vrcap training checkpoint of this version (no config, dataset or target "
            "statistics); train it again with this vrcap"
        )
    cfg = build(TrainConfig, state["config"])
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    return state, cfg, model, TargetBuilder.from_state(state["targets"])


def evaluate_folder(
    checkpoint: Path, data: Path, split: str = "val", drop: list[str] | None = None
) -> dict[str, Any]:
    """Metrics of ``checkpoint`` on ``split`` of the tensor folder ``data``, with ``drop`` inputs masked."""
    from replay.dataset import SessionDataset, collate
    from replay.manifest import read_manifest

    drop = list(drop or [])
    unknown = [d for d in drop if d not in DROPPABLE]
    if unknown:
        raise UsageError(f"--drop {unknown[0]}: unknown input; use one of {', '.join(DROPPABLE)}")
    state, cfg, model, builder = load_for_eval(checkpoint)
    manifest = read_manifest(data)
    window = cfg.data.window
    dataset = SessionDataset(
        data,
        split=split,
        window=window,
        stride=cfg.data.stride or window,
        modalities=default_modalities(manifest),
    )
    if len(dataset) == 0:
        raise UsageError(
            f"nothing to evaluate: {dataset.describe()}; pick another --split or convert more sessions"
        )
    dataset.manifest["normalization"] = state["dataset"].get(
        "normalization", manifest.get("normalization", {})
    )
    dataset._norm = dataset._normalization()  # the checkpoint's statistics, whatever this folder's say
    batches = eval_batches(dataset, collate)
    with torch.no_grad():
        metrics = Evaluator(model, builder, float(manifest.get("step_hz", 30)), drop).run(batches)
        emitted = emitted_text(model, batches, frozenset(drop))
    steps = sum(b - a for a, b in _spans(dataset))
    return {
        "checkpoint": str(checkpoint),
        "step": int(state.get("step", 0)),
        "data": str(data),
        "split": split,
        "drop": drop,
        "sessions": len(dataset.sessions),
        "steps": steps,
        "windows": len(dataset),
        "horizon_steps": cfg.model.horizon,
        "not_evaluated": beyond_horizon(cfg.model.horizon, float(manifest.get("step_hz", 30))),
        "metrics": metrics,
        "emitted_text": emitted,
    }


def emitted_text(
    model: Any, batches: list[dict[str, Any]], drop: frozenset[str], limit: int = 20
) -> list[dict]:
    """What the text heads say on their own (greedy, no teacher): the steps where they choose to speak, with the
    text they generate and what was recorded there. At most ``limit`` per head."""
    from replay.tokenizer import BOS, EOS, decode
    from training.model import TEXT_STREAMS

    out: list[dict[str, Any]] = []
    counts = dict.fromkeys(TEXT_STREAMS, 0)
    for batch in batches:
        h = model.hidden(batch, drop)[:, :-1]  # step t speaks about step t+1
        real = batch["step_mask"][:, 1:] & batch["step_mask"][:, :-1]
        for head, key in TEXT_STREAMS.items():
            if counts[head] >= limit:
                continue
            text_head = model.heads[head]
            start = torch.full((*h.shape[:2], 1), BOS, dtype=torch.long)
            first = text_head(h[real], start[real])[:, 0]
            speaks = first[:, BOS] > first[:, EOS]
            if not bool(speaks.any()):
                continue
            tokens = text_head.generate(h[real][speaks], model.cfg.text_len)
            where = real.nonzero()[speaks]
            for (b, t), row in zip(where.tolist(), tokens.tolist(), strict=True):
                if counts[head] >= limit:
                    break
                recorded = decode(batch[key][b, t + 1].tolist()) if key in batch else []
                said = decode([BOS, *row[1:]]) if row and row[0] == BOS else []
                out.append({"head": head, "session": batch["session"][b], "step": int(batch["start"][b]) + t + 1,
                            "said": said, "recorded": recorded})  # fmt: skip
                counts[head] += 1
    return out


def _spans(dataset: Any) -> list[tuple[int, int]]:
    from training.targets import split_spans

    return [(a, b) for _, a, b in split_spans(dataset.manifest, dataset.split)]


def infer_session(checkpoint: Path, session: Path, drop: list[str] | None = None) -> dict[str, Any]:
    """`vrcap infer`: the session converted with the checkpoint's replay config, every step evaluated."""
    from replay.config import ReplayConfig
    from replay.convert import convert_sessions

    state = load_checkpoint(checkpoint, verify=checkpoint.with_suffix(".json").is_file())
    info = state.get("dataset")
    if not isinstance(info, dict):
        raise CheckpointError(f"{checkpoint} is not a vrcap training checkpoint (no dataset info)")
    with tempfile.TemporaryDirectory(prefix="vrcap-infer-") as tmp:
        root = Path(tmp)
        replay_cfg = build(ReplayConfig, info.get("config", {}))
        manifest = convert_sessions([session], root, replay_cfg, progress=False, log=lambda _msg: None)
        names = sorted(manifest["sessions"])
        manifest["splits"] = {"train": [], "val": names, "test": []}  # the whole session, one split
        manifest["split_ranges"] = {}
        (root / "manifest.json").write_text(json.dumps(manifest))
        report = evaluate_folder(checkpoint, root, "val", drop)
    report["session"] = str(session)
    return report


def render_report(report: dict[str, Any]) -> str:
    what = report.get("session") or f"{report['data']} [{report['split']}]"
    dropped = f", inputs dropped: {', '.join(report['drop'])}" if report.get("drop") else ""
    title = (
        f"{what}: {report['sessions']} session(s), {report['steps']} steps, {report['windows']} windows; "
        f"checkpoint {report['checkpoint']} (step {report['step']}, horizon {report['horizon_steps']} steps){dropped}"
    )
    lines = [render_table(report["metrics"], title)]
    lines += [f"  {note}" for note in report.get("not_evaluated", [])]
    emitted = report.get("emitted_text") or []
    lines.append(f"  text the model emitted on its own (greedy): {len(emitted)} step(s)")
    for e in emitted[:8]:
        lines.append(f"    {e['head']:<14} step {e['step']:>6}: {' | '.join(e['said']) or '(empty)'!r}"
                     f"  recorded: {' | '.join(e['recorded']) or '(none)'!r}")  # fmt: skip
    return "\n".join(lines)
