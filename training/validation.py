"""The validation pass of `vrcap train`: the same fixed windows of the held-out split every ``eval_interval``
steps, the model beside its baselines (training/evaluate.py), the best checkpoint by ``best_metric`` and
optional early stopping.

Why fixed windows: a curve over passes compares like with like only if every pass sees the same windows; they
are spread evenly over the split (not the first N), so one long session does not stand for all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.data import open_dataset
from training.evaluate import Evaluator
from training.targets import TargetBuilder
from vrcap.errors import UsageError

EVAL_BATCH = 8


def eval_batches(dataset: Any, collate: Any, limit: int = 0) -> list[dict[str, Any]]:
    """Collated batches of the dataset's windows, at most ``limit`` (0 = all) spread evenly over it."""
    n = len(dataset)
    picked = (
        list(range(n))
        if not limit or limit >= n
        else np.linspace(0, n - 1, limit).round().astype(int).tolist()
    )
    picked = list(dict.fromkeys(picked))
    return [
        collate(dataset.__getitems__(picked[i : i + EVAL_BATCH])) for i in range(0, len(picked), EVAL_BATCH)
    ]


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


class Validation:
    """Owns the held-out batches and the best value so far; ``due(step)`` says when a pass runs."""

    def __init__(
        self, cfg: TrainConfig, root: Path, model: Any, builder: TargetBuilder, step_hz: float
    ) -> None:
        self.cfg = cfg
        self.interval = cfg.eval_interval
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_passes = 0
        self.batches: list[dict[str, Any]] = []
        if not self.interval:
            return
        dataset, _, collate = open_dataset(root, cfg, cfg.eval_split, cfg.seed)
        if len(dataset) == 0:
            raise UsageError(
                f"no {cfg.eval_split!r} windows for the validation pass: {dataset.describe()}; record more or "
                "longer sessions, or set eval_interval=0 to train without one"
            )
        self.windows = len(dataset)
        self.batches = eval_batches(dataset, collate, cfg.eval_max_windows)
        self.evaluator = Evaluator(model, builder, step_hz)

    def due(self, step: int, last: bool) -> bool:
        return bool(self.interval) and (step % self.interval == 0 or last)

    def run(self) -> dict[str, float]:
        return self.evaluator.run(self.batches)

    def improved(self, metrics: dict[str, float], step: int) -> bool:
        """Whether this pass is the best so far by cfg.best_metric (and counts passes without improvement)."""
        name = self.cfg.best_metric
        if name not in metrics:
            known = ", ".join(sorted(k for k in metrics if "|" not in k)[:8])
            raise UsageError(f"best_metric {name!r} is not measured on this data; use one of {known}, ...")
        value = metrics[name]
        # A change below one part in a million is float noise (a pass's reductions need not run in the same order
        # twice), not learning: it neither makes a new best nor resets early stopping's patience.
        margin = 1e-6 * abs(self.best) if self.best is not None else 0.0
        better = self.best is None or (
            value > self.best + margin if higher_is_better(name) else value < self.best - margin
        )
        if better and math.isfinite(value):
            self.best, self.best_step, self.bad_passes = value, step, 0
            return True
        self.bad_passes += 1
        return False

    def should_stop(self) -> bool:
        return bool(self.cfg.early_stop_patience) and self.bad_passes >= self.cfg.early_stop_patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_passes": self.bad_passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state.get("best"), state.get("best_step")
        self.bad_passes = int(state.get("bad_passes", 0))
