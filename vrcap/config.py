"""Config loading: dataclasses hold the defaults and the checks, YAML files and `key=value` overrides set them.

A key that does not exist, or a value of the wrong type, is an error that names the key, the file and what
would be accepted — a typo must never silently leave a default in place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vrcap.errors import ConfigError

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of settings, got {value!r}")
        return build(hint, value, where)  # type: ignore[arg-type]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string; users type it all the same
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if number == number and abs(number) != float("inf"):
                    return number
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v] if value else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [v if item is Any else _coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def build(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Make ``cls`` from a mapping, checking every key and type; __post_init__ checks the values."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown setting {path!r}; known here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from exc


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``a.b=1`` pairs into a nested mapping; values are read as YAML scalars (1, 0.5, true, [a, b])."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. sim.camera_fps=15)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} sets a key inside {part!r}, which is a value")
        node[parts[-1]] = value
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; the defaults are in {CONFIG_DIR}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def load_config(
    cls: type[T], path: Path | None, overrides: list[str] | None = None, default_name: str = ""
) -> T:
    """Defaults ← ``path`` (or configs/<default_name> when it exists) ← command-line overrides."""
    if path is None and default_name and (CONFIG_DIR / default_name).is_file():
        path = CONFIG_DIR / default_name
    data = read_yaml(path) if path is not None else {}
    data = merge(data, parse_overrides(overrides or []))
    try:
        return build(cls, data)
    except ConfigError as exc:
        source = f" (from {path})" if path is not None else ""
        raise ConfigError(f"{exc}{source}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
