"""The bounds of every numeric setting a client may override: the config schema's, narrowed where the API must.

One source: the pydantic schema of each config (``Field(ge=..., le=...)`` in capture/config.py, vrcap/writer.py,
training/config.py, ...) bounds every numeric key, for a local run and for the API alike; they are read from it
here, never copied. ``API_LIMITS`` only lists where a client on the network gets less than the person at the
machine, each with the reason. A value outside is a 422 naming the key and the range, before anything starts; the
effective bounds are published in the OpenAPI schema of each ``overrides`` field (``openapi_properties``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from server.errors import ApiError

MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Bound:
    """``low <= value <= high`` (``<`` where open); ``integer``: the setting is an int."""

    low: float
    high: float
    integer: bool
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below and math.isfinite(value)

    def words(self) -> str:
        return f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"

    def narrowed(self, low: float, high: float) -> Bound:
        """The intersection with the closed range [low, high]."""
        lo, lo_open = (low, False) if low > self.low else (self.low, self.low_open)
        hi, hi_open = (high, False) if high < self.high else (self.high, self.high_open)
        return Bound(lo, hi, self.integer, lo_open, hi_open)


Bounds = dict[str, Bound]

# Where a client on the network gets less than the schema allows a local run (key: (low, high), why).
_NETWORK = "the server's memory, disk or processes, spent on a client's request"
API_LIMITS_CAPTURE: dict[str, tuple[float, float, str]] = {
    "writer.segment_max_bytes": (MIB, 4096 * MIB, "one segment file of at most 4 GiB"),
    "writer.flush_interval_s": (0.01, 60, "a crash loses at most a minute; no flush loop spinning"),
    "writer.max_record_bytes": (MIB, 4095 * MIB, "records below 1 MiB would refuse ordinary camera frames"),
    "record.status_interval_s": (0.05, 60, "faster status snapshots cost the recorder CPU"),
    # The sim's schema bounds are what a rig can be; a request from the network gets a smaller rig.
    "sim.headset_rate_hz": (1, 1000, "a rate below 1 Hz records next to nothing"),
    "sim.audio_rate_hz": (16000, 192000, _NETWORK),
    "sim.audio_block": (16, 48000, _NETWORK),
    "sim.camera_width": (320, 3840, "4K at most: " + _NETWORK),
    "sim.camera_height": (40, 2160, "4K at most: " + _NETWORK),
    "sim.camera_fps": (1, 120, _NETWORK),
}
API_LIMITS_TRAIN: dict[str, tuple[float, float, str]] = {
    "model.d_model": (8, 8192, _NETWORK),
    "model.n_layers": (1, 256, _NETWORK),
    "model.n_heads": (1, 256, _NETWORK),
    "model.mlp_ratio": (0.25, 16, _NETWORK),
    "model.camera_height": (8, 2048, _NETWORK),
    "model.camera_width": (8, 2048, _NETWORK),
    "model.patch_size": (1, 512, _NETWORK),
    "model.text_len": (1, 4096, _NETWORK),
    "data.batch_size": (1, 4096, _NETWORK),
    "data.num_workers": (0, 32, "worker processes forked for one request"),
    "optim.grad_accum": (1, 4096, _NETWORK),
    "optim.warmup_steps": (0, 10_000_000, "a job of a few days at most"),
    "max_steps": (1, 10_000_000, "a job of a few days at most"),
    "log_interval": (1, 10_000_000, "as max_steps"),
    "save_interval": (1, 10_000_000, "as max_steps"),
    "threads": (0, 256, "threads one job may start"),
}


def schema_bounds(cls: Any, prefix: str = "") -> Bounds:
    """Every numeric setting of a config class with both a lower and an upper bound in its schema, by dotted key.

    Sections are followed into nested config classes; a plain dataclass section (no pydantic fields) has none.
    """
    out: Bounds = {}
    for name, info in (getattr(cls, "__pydantic_fields__", None) or {}).items():
        kind, key = info.annotation, prefix + name
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            out.update(schema_bounds(kind, key + "."))
            continue
        if kind not in (int, float):  # bool is its own type: not bounded
            continue
        low = high = None
        low_open = high_open = False
        for rule in info.metadata:  # pydantic's Field(ge=...) etc. become annotated-types rules
            if getattr(rule, "ge", None) is not None:
                low = rule.ge
            elif getattr(rule, "gt", None) is not None:
                low, low_open = rule.gt, True
            elif getattr(rule, "le", None) is not None:
                high = rule.le
            elif getattr(rule, "lt", None) is not None:
                high, high_open = rule.lt, True
        if low is not None and high is not None:
            out[key] = Bound(float(low), float(high), kind is int, low_open, high_open)  # type: ignore[arg-type]
    return out


def api_bounds(cls: Any, defaults: Any, limits: dict[str, tuple[float, float, str]]) -> Bounds:
    """The schema's bounds of ``cls``, narrowed by ``limits``; a limited key the schema does not bound takes
    the type of its default (``defaults``: an instance of ``cls``, for sections without a schema)."""
    bounds = schema_bounds(cls) if cls is not None else {}
    for key, (low, high, _) in limits.items():
        if key in bounds:
            bounds[key] = bounds[key].narrowed(low, high)
        else:
            default = value_at(defaults, key)
            integer = isinstance(default, int) and not isinstance(default, bool)
            bounds[key] = Bound(float(low), float(high), integer)
    return dict(sorted(bounds.items()))


def _capture() -> tuple[Any, Any]:
    from capture.config import CaptureConfig

    return CaptureConfig, CaptureConfig()


def _train() -> tuple[Any, Any]:
    try:
        from training.config import TrainConfig
    except ImportError:  # training/ not installed: the limits alone (the server refuses train jobs then)
        return None, None
    return TrainConfig, TrainConfig()


def value_at(config: Any, key: str) -> Any:
    """``config.a.b`` for ``"a.b"``; None where a part is missing."""
    node = config
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def check_overrides(overrides: dict[str, Any], bounds: Bounds) -> None:
    """The same 422 for a request's own values, before the config is built from them."""
    _check({key: overrides[key] for key in bounds if key in overrides}, bounds)


def check_bounds(config: Any, bounds: Bounds) -> None:
    """422 naming the first setting of ``config`` outside its bounds (a config file's value, too)."""
    _check({key: value_at(config, key) for key in bounds}, bounds)


def _check(values: dict[str, Any], bounds: Bounds) -> None:
    for key, value in values.items():
        bound = bounds[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not bound.holds(value):
            raise ApiError(
                422,
                "out-of-bounds",
                f"{key} = {_num(value)} is outside {bound.words()}",
                f"use a value in {bound.words()} (the config schema's bounds, narrower for the API where "
                "a request could spend the server's memory, disk or processes)",
            )


def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe(bounds: Bounds) -> str:
    return "bounded keys: " + ", ".join(f"{k} in {b.words()}" for k, b in bounds.items())


def openapi_properties(bounds: Bounds) -> dict[str, dict[str, Any]]:
    """JSON Schema (2020-12, as OpenAPI 3.1) of each bounded key: its type and range."""
    properties: dict[str, dict[str, Any]] = {}
    for key, b in bounds.items():
        prop: dict[str, Any] = {"type": "integer" if b.integer else "number"}
        prop["exclusiveMinimum" if b.low_open else "minimum"] = int(b.low) if b.integer else b.low
        prop["exclusiveMaximum" if b.high_open else "maximum"] = int(b.high) if b.integer else b.high
        properties[key] = prop
    return properties


CAPTURE_BOUNDS: Bounds = api_bounds(*_capture(), API_LIMITS_CAPTURE)
TRAIN_BOUNDS: Bounds = api_bounds(*_train(), API_LIMITS_TRAIN)
