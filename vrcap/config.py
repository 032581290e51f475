"""Config loading: one schema per section (pydantic dataclasses: defaults, descriptions, bounds, checks), set by
a YAML file and `key=value` overrides.

The YAML files ship inside the package (``vrcap/configs/``, package data), so a non-editable install finds them;
``--config`` takes a shipped NAME (``tiny``) or a PATH. Overrides are parsed against the schema's types, not as
YAML 1.1: ``root=1:30`` stays the string "1:30" (YAML 1.1 reads 90), ``fsync=on`` is true (YAML: an error here).
A key that does not exist, or a value of the wrong type, is an error that names the key, the file and what
would be accepted — a typo must never silently leave a default in place.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from vrcap.errors import ConfigError

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: in the wheel too
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NONE = ("null", "none", "~", "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in _NONE)):
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
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:  # an override: on, off, yes...
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where} must be true or false (or on/off, yes/no), got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""), 10)
            except ValueError:
                pass
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
        text = str(exc)
        named = not where or text.startswith(
            (f"{where}.", f"{where} ")
        )  # "convert.builder must be ...": as is
        raise ConfigError(text if named else f"{where}: {text}") from None
    except (
        ValidationError
    ) as exc:  # a bound of the schema: one line naming the key, the bound and the default
        raise ConfigError(_bound_message(cls, exc, where)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from exc


def _range_words(info: Any) -> str | None:
    """A field's bounds in words: "between 1 and 1000", "in (0, 3600]", ">= 0"."""
    b = {
        k: getattr(m, k)
        for m in getattr(info, "metadata", [])
        for k in ("ge", "gt", "le", "lt")
        if hasattr(m, k)
    }
    low = ("[", b["ge"]) if "ge" in b else ("(", b["gt"]) if "gt" in b else None
    high = ("]", b["le"]) if "le" in b else (")", b["lt"]) if "lt" in b else None
    if low and high:
        if low[0] == "[" and high[0] == "]":
            return f"between {low[1]} and {high[1]}"
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return None


def _bound_message(cls: type, exc: ValidationError, where: str) -> str:
    """pydantic's error as one line: the key, its allowed range, what was given, and the default."""
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    path = f"{where}.{name}" if where else name
    info = getattr(cls, "__pydantic_fields__", {}).get(name)
    default = getattr(info, "default", None)
    hint = f"; the default is {default!r}" if isinstance(default, (int, float, str, bool)) else ""
    words = _range_words(info)
    if words is not None and first["type"].startswith(("greater_than", "less_than")):
        return f"{path} must be {words} (got {first['input']!r}){hint}"
    return f"{path}: {first['msg']} (got {first['input']!r}){hint}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``a.b=1`` pairs into a nested mapping of the values as typed: strings, for ``build`` to read by the schema.

    Not YAML 1.1: "1:30" stays a string, "on" is left for a bool field to read. Only a value that opens a list,
    a mapping or a JSON string (``[``, ``{``, ``"``; what the server sends) is parsed, as JSON or YAML flow.
    """
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. sim.camera_fps=15)")
        value: Any = raw
        if raw[:1] in ("[", "{", '"'):
            try:
                value = json.loads(raw)
            except ValueError:
                try:
                    value = yaml.safe_load(raw)
                except yaml.YAMLError:
                    raise ConfigError(f"override {item!r}: {raw!r} is neither JSON nor a YAML list") from None
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


def config_names(folder: str = "") -> list[str]:
    """The shipped config NAMEs of a folder of ``vrcap/configs`` ("" or "train")."""
    return sorted(p.stem for p in (CONFIG_DIR / folder).glob("*.yaml"))


def resolve_config(choice: Path | str | None, default_name: str) -> Path:
    """``--config NAME|PATH``: an existing file, else a shipped name beside ``default_name``, else an error."""
    folder = str(Path(default_name).parent).replace(".", "")
    if choice is None or str(choice) == "":
        return CONFIG_DIR / default_name
    path = Path(choice)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    if len(path.parts) == 1 and (CONFIG_DIR / folder / f"{name}.yaml").is_file():
        return CONFIG_DIR / folder / f"{name}.yaml"
    names = ", ".join(config_names(folder)) or "(none)"
    if len(path.parts) > 1 or path.suffix:
        raise ConfigError(f"config file {choice} does not exist; or give a shipped config name: {names}")
    raise ConfigError(f"no shipped config named {str(choice)!r} and no such file; shipped names: {names}")


def load_config(
    cls: type[T], path: Path | str | None, overrides: list[str] | None = None, default_name: str = ""
) -> T:
    """Schema defaults ← the YAML (``path``: a file or a shipped NAME; else the shipped default) ← overrides."""
    source = resolve_config(path, default_name) if default_name or path is not None else None
    if source is not None and not source.is_file():
        source = None  # no shipped default for this section: the schema's defaults alone
    data = read_yaml(source) if source is not None else {}
    data = merge(data, parse_overrides(overrides or []))
    try:
        return build(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_origin(str(exc), source, overrides or [])}") from None


def _origin(message: str, source: Path | None, overrides: list[str]) -> str:
    """Where the bad value came from: the user's own override when the message names its key, else the file."""
    for item in reversed(overrides):  # the last override of a key is the one in force
        key = item.split("=", 1)[0].strip()
        parts = key.split(".")
        prefixes = [
            ".".join(parts[: i + 1]) for i in range(len(parts))
        ]  # `nope.x`: the unknown part is `nope`
        if key and (
            message.startswith((f"{key} ", f"{key}:", f"{key}."))
            or any(message.startswith(f"unknown setting {p!r}") for p in prefixes)
        ):
            return f" (from the command line: {item})"
    return f" (from {source})" if source is not None else ""


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
