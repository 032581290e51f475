"""Config names and overrides sent to jobs: checked here, against the same schema the job will load.

A job that would fail on its first line because of a typo in a key must be refused before it is spawned, with
the key named. Overrides travel to the child as ``key=<JSON>`` arguments, which vrcap's override parser reads
back as the same YAML scalar, so what was checked is exactly what runs.

The replay and training config schemas are imported (config modules only: they import no torch) — the jobs
themselves run in child processes. There is no second, hand-written type check: without the package a job needs,
the job is refused.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from server.bounds import TRAIN_BOUNDS, check_bounds, check_overrides
from server.errors import ApiError
from vrcap.config import CONFIG_DIR, load_config

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,5}$")
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TRAIN_DIR = CONFIG_DIR / "train"


def override_args(overrides: dict[str, Any]) -> list[str]:
    """``{"optim.lr": 0.001}`` → ``["optim.lr=0.001"]``, refusing keys that are not dotted identifiers."""
    items = []
    for key, value in overrides.items():
        if not _KEY.match(key):
            raise ApiError(
                422,
                "bad-override",
                f"override key {key!r} is not a dotted config key",
                "use keys like 'optim.lr' or 'images.size' (see configs/)",
            )
        items.append(f"{key}={json.dumps(value)}")
    return items


def train_config_names() -> list[str]:
    return sorted(p.stem for p in TRAIN_DIR.glob("*.yaml") if _CONFIG_NAME.match(p.stem))


def train_config_path(name: str) -> Path:
    names = train_config_names()
    if not _CONFIG_NAME.match(name) or name not in names:
        raise ApiError(
            422,
            "unknown-config",
            f"no training config named {name!r}",
            f"use one of: {', '.join(names) or '(none found in configs/train)'}",
        )
    return TRAIN_DIR / f"{name}.yaml"


def check_train(
    config_path: Path, overrides: dict[str, Any], max_steps: int | None, nproc: int = 1, max_nproc: int = 1
) -> list[str]:
    """The override arguments for `vrcap train`, once the merged config is known to be valid and bounded."""
    if max_steps is not None and "max_steps" in overrides:
        raise ApiError(
            422, "bad-override", "override 'max_steps' is hidden by the request's max_steps field",
            "set max_steps in one place: the request field",
        )  # fmt: skip
    if not 1 <= nproc <= max_nproc:
        raise ApiError(
            422, "bad-nproc", f"nproc {nproc} is outside [1, {max_nproc}] (max_nproc: this machine's cores)",
            f"ask for at most {max_nproc} processes",
        )  # fmt: skip
    items = override_args(overrides)
    checked = [*items, f"max_steps={max_steps}"] if max_steps is not None else items
    check_overrides(overrides, TRAIN_BOUNDS)
    config = load_config(_schema("training.config", "TrainConfig", "train"), config_path, checked)
    check_bounds(config, TRAIN_BOUNDS)
    if config.optim.grad_accum % nproc:
        raise ApiError(
            422, "bad-nproc", f"optim.grad_accum ({config.optim.grad_accum}) is not a multiple of nproc ({nproc})",
            "the effective batch stays the same at any process count: use an nproc that divides grad_accum, "
            "or override optim.grad_accum",
        )  # fmt: skip
    return items


def check_replay(overrides: dict[str, Any]) -> list[str]:
    items = override_args(overrides)
    load_config(_schema("replay.config", "ReplayConfig", "replay"), None, items, default_name="replay.yaml")
    return items


def _schema(module: str, name: str, extra: str) -> type:
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except ImportError:
        raise ApiError(
            503,
            "not-installed",
            f"this server cannot run {extra} jobs: {module} is not installed",
            f"install what {module} needs (pip install 'vrcap[train]' for training) and restart the server",
        ) from None
