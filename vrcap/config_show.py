"""`vrcap config show SECTION [NAME|PATH] [KEY=VALUE ...]` and `vrcap config schema SECTION`.

The sections come from the ``vrcap.configs`` entry points (each package names its loader), so vrcap shows the
capture, replay, train and server configs without importing those packages by name. ``show`` prints the config
as it would be used — schema defaults, then the YAML, then the overrides — and says which YAML that was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from importlib.metadata import entry_points
from typing import Any

from vrcap.config import resolve_config
from vrcap.errors import UsageError

GROUP = "vrcap.configs"
DEFAULT_NAMES = {"capture": "capture.yaml", "replay": "replay.yaml", "train": "train/small.yaml",
                 "server": "server.yaml", "export": "export.yaml"}  # fmt: skip


def _loaders() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _load(section: str, choice: str | None, overrides: list[str]) -> Any:
    loaders = _loaders()
    if section not in loaders:
        raise UsageError(f"no config section {section!r}; sections: {', '.join(sorted(loaders))}")
    return loaders[section].load()(choice, overrides)


def cmd_config(args: argparse.Namespace) -> int:
    if args.name is not None and "=" in args.name:  # no NAME given: the first word is an override
        args.overrides, args.name = [args.name, *args.overrides], None
    cfg = _load(args.section, args.name, list(args.overrides))
    if args.action == "schema":
        from pydantic import TypeAdapter

        sys.stdout.write(json.dumps(TypeAdapter(type(cfg)).json_schema(), indent=2) + "\n")
        return 0
    data = dataclasses.asdict(cfg)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    import yaml

    source = resolve_config(args.name, DEFAULT_NAMES.get(args.section, ""))
    overrides = f", with {' '.join(args.overrides)}" if args.overrides else ""
    sys.stdout.write(f"# {args.section} config: {source}{overrides}\n")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return 0


def register(sub: Any) -> None:
    """Add ``config`` to vrcap's subparsers."""
    cfg = sub.add_parser(
        "config",
        help="show a resolved config, or its JSON schema",
        description="Show the config a command would use (schema defaults <- YAML <- overrides), or its schema.",
    )
    cfg.add_argument(
        "action", choices=["show", "schema"], help="show: the resolved values; schema: JSON schema"
    )
    cfg.add_argument("section", metavar="SECTION", help="capture, replay, train, server or export")
    cfg.add_argument(
        "name",
        nargs="?",
        default=None,
        metavar="NAME|PATH",
        help="a shipped config name (e.g. tiny) or a YAML file",
    )
    cfg.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. optim.lr=1e-3")
    cfg.add_argument("--json", action="store_true", help="show as JSON instead of YAML")
    cfg.set_defaults(func=cmd_config)
