"""Config names and overrides sent to jobs: checked here, against the same dataclasses the job will load.

A job that would fail on its first line because of a typo in a key must be refused before it is spawned, with
the key named. Overrides travel to the child as ``key=<JSON>`` arguments, which vrcap's override parser reads
back as the same YAML scalar, so what was checked is exactly what runs.

The replay and training config classes are imported (config modules only: they import no torch) — the jobs
themselves run in child processes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from server.errors import ApiError
from vrcap.config import CONFIG_DIR, load_config, read_yaml

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


def check_train(config_path: Path, overrides: dict[str, Any], max_steps: int | None) -> list[str]:
    """The override arguments for `vrcap train`, once the merged config is known to be valid."""
    items = override_args(overrides)
    checked = [*items, f"max_steps={max_steps}"] if max_steps is not None else items
    try:
        from training.config import TrainConfig
    except ImportError:  # training/ not installed: check keys and types against the YAML itself
        _check_against_yaml(config_path, overrides)
        return items
    load_config(TrainConfig, config_path, checked)
    return items


def check_replay(overrides: dict[str, Any]) -> list[str]:
    items = override_args(overrides)
    try:
        from replay.config import ReplayConfig
    except ImportError:
        _check_against_yaml(CONFIG_DIR / "replay.yaml", overrides)
        return items
    load_config(ReplayConfig, None, items, default_name="replay.yaml")
    return items


def _check_against_yaml(path: Path, overrides: dict[str, Any]) -> None:
    """Fallback: a key must exist in the YAML file and keep its value's type."""
    data = read_yaml(path)
    for key, value in overrides.items():
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ApiError(
                    422, "unknown-config-key", f"{key!r} is not a key of {path.name}", "check configs/"
                )
            node = node[part]
        if (
            node is not None
            and not isinstance(value, type(node))
            and not (isinstance(node, float) and isinstance(value, int))
        ):
            raise ApiError(
                422,
                "bad-config-type",
                f"{key!r} must be a {type(node).__name__}",
                f"see {path.name} for the type",
            )
