"""Request and response bodies of the API: one pydantic class each, requests refuse unknown fields.

Request models check shape and type only; meaning (does the session exist, is the config key known) is checked
by the route, which can say which one is wrong and how to fix it.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from server.bounds import CAPTURE_BOUNDS, TRAIN_BOUNDS, Bounds, describe, openapi_properties
from vrcap.packets import AnnotationChannel, AnnotationKind

Scalar = str | int | float | bool
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,5}$"
CONFIG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# Stated in the schema only (json_schema_extra): the routes check them, with a code and a fix per problem.
# The schema's name pattern: NAME_PATTERN without '..' anywhere (vrcap.names refuses it).
NAME_SCHEMA = {"pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}
OVERRIDES_SCHEMA = {"propertyNames": {"pattern": KEY_PATTERN}}


# Capture keys a recording request sets with its own fields; as overrides they are refused (422 bad-override).
CAPTURE_FIELD_KEYS = ("record.source", "record.audio", "record.cameras", "record.duration_s")


def bounded_overrides(bounds: Bounds, refused: tuple[str, ...] = ()) -> dict[str, object]:
    """The overrides' schema: the key pattern, and the type and range of every bounded key (server/bounds.py,
    read from the config schema); ``refused`` keys are stated as not allowed."""
    names: dict[str, object] = dict(OVERRIDES_SCHEMA["propertyNames"])
    if refused:
        names["not"] = {"enum": list(refused)}
    kept = {k: b for k, b in bounds.items() if k not in refused}
    return {"propertyNames": names, "properties": openapi_properties(kept)}


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="stable code, e.g. 'unauthorized', 'recording-running'")
    detail: str = Field(description="what is wrong")
    fix: str = Field(description="what to do about it")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    recording: bool


# --- devices ---------------------------------------------------------------------------------------------


class Microphone(BaseModel):
    index: int
    name: str
    hostapi: str = ""
    max_input_channels: int = 0
    default_samplerate: float = 0.0


class Camera(BaseModel):
    spec: str
    backend: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0


class OpenXRInfo(BaseModel):
    available: bool
    runtime: str | None = None
    runtime_version: str | None = None
    system: str | None = None
    extensions: list[str] = []
    reason: str | None = None


class Devices(BaseModel):
    audio: list[Microphone]
    cameras: list[Camera]
    openxr: OpenXRInfo


# --- recordings ------------------------------------------------------------------------------------------


class RecordingStart(Request):
    session: str = Field(
        min_length=1, max_length=128, description="new session name (letters, digits, -_.)",
        json_schema_extra=NAME_SCHEMA,
    )  # fmt: skip
    source: Literal["sim", "openxr", "webxr"] = "sim"
    audio: str = Field("sim", min_length=1, max_length=200, description="'sim', 'none' or a microphone")
    cameras: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="NAME=SPEC each, SPEC a device index, /dev/videoN or an http/rtsp/udp/tcp URL; "
        "empty = the simulator's cameras",
    )
    duration_s: float | None = Field(
        None, gt=0, le=86400, allow_inf_nan=False, description="stop on its own after this long"
    )
    overrides: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=32,
        description='capture config overrides by dotted key, e.g. {"sim.camera_fps": 15}; '
        + describe({k: b for k, b in CAPTURE_BOUNDS.items() if k not in CAPTURE_FIELD_KEYS}),
        json_schema_extra=bounded_overrides(CAPTURE_BOUNDS, CAPTURE_FIELD_KEYS),
    )


class Incident(BaseModel):
    stream: str | None = None
    kind: str | None = None
    message: str | None = None
    t: int | None = None


def _live_stats_body() -> type[BaseModel]:
    """The API's view of capture's LiveStats, made from its fields: the field list is written once, there.

    Two fields are typed closer for the API (clock figures are numbers, incidents have a shape) and one is added
    (``total_drops``, a property of LiveStats). Every field is required: the server always sends all of them.
    """
    import dataclasses
    import typing

    from capture.engine import LiveStats

    hints = typing.get_type_hints(LiveStats)
    closer: dict[str, Any] = {"clocks": dict[str, dict[str, float]], "incidents": list[Incident]}
    fields: dict[str, Any] = {
        f.name: (closer.get(f.name, hints[f.name]), ...) for f in dataclasses.fields(LiveStats)
    }
    fields["total_drops"] = (int, ...)
    return create_model("LiveStatsBody", **fields)  # type: ignore[call-overload, no-any-return]


LiveStatsBody = _live_stats_body()


class RecordingResultBody(BaseModel):
    frames: int
    dropped_frames: int
    duration_s: float
    bytes_written: int
    stop_reason: str
    drops: dict[str, int]


class RecordingStatus(BaseModel):
    id: str | None = Field(description="null when no recording was started since the server started")
    session: str | None
    state: Literal["idle", "starting", "recording", "stopping", "stopped", "failed"]
    started_utc: str | None = None
    describes: str | None = Field(None, description="what is recorded: headset, microphone, cameras")
    stats: LiveStatsBody | None = None
    result: RecordingResultBody | None = None
    error: str | None = None


class AnnotationIn(Request):
    text: str = Field(min_length=1, max_length=4000)
    kind: AnnotationKind = "marker"
    channel: AnnotationChannel = "external"


class AnnotationOut(BaseModel):
    recording: str
    t_ns: int = Field(description="the server's receive time, host monotonic ns (the session's clock)")
    text: str
    kind: str
    channel: str


# --- sessions --------------------------------------------------------------------------------------------


class SessionSummary(BaseModel):
    name: str
    status: str
    duration_s: float
    frames: int
    size_bytes: int
    start_utc: str | None
    recording: bool = Field(description="true while this server records into it")
    error: str | None = Field(None, description="why the summary is incomplete, when it is")


class SessionList(BaseModel):
    sessions: list[SessionSummary]


class Finding(BaseModel):
    level: str
    code: str
    message: str
    segment: str | None = None
    offset: int | None = None
    fixable: bool = False


class StreamInfo(BaseModel):
    name: str
    kind: str
    rate_hz: float
    samples: int


class Validation(BaseModel):
    valid: bool
    packets: int
    duration_s: float
    dropped_frames: int
    findings: list[Finding]


class SessionDetail(BaseModel):
    name: str
    status: str
    duration_s: float
    frames: int
    size_bytes: int
    segments: int
    start_utc: str | None
    drops: dict[str, int]
    streams: list[StreamInfo]
    recording: bool
    validation: Validation | None = Field(description="null while the session is being recorded")


class Deleted(BaseModel):
    deleted: str


# --- jobs ------------------------------------------------------------------------------------------------


class ReplayJobIn(Request):
    session: str = Field(
        min_length=1,
        max_length=128,
        description="a session under <root>/sessions",
        json_schema_extra=NAME_SCHEMA,
    )
    dataset: str | None = Field(
        None, min_length=1, max_length=128, description="output name under <root>/datasets; default: session",
        json_schema_extra=NAME_SCHEMA,
    )  # fmt: skip
    overrides: dict[str, Scalar] = Field(
        default_factory=dict, max_length=32, description="replay config keys to change (vrcap/configs/replay.yaml)",
        json_schema_extra=OVERRIDES_SCHEMA,
    )  # fmt: skip


def _train_config_names() -> list[str]:
    from server.configcheck import train_config_names

    return train_config_names()


class TrainJobIn(Request):
    config: str = Field(
        min_length=1, max_length=64, description="a config name from configs/train, e.g. tiny",
        json_schema_extra={"pattern": CONFIG_PATTERN, "enum": _train_config_names()},
    )  # fmt: skip
    dataset: str = Field(
        min_length=1,
        max_length=128,
        description="a dataset under <root>/datasets",
        json_schema_extra=NAME_SCHEMA,
    )
    overrides: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=32,
        description="config keys to change, checked against the schema; " + describe(TRAIN_BOUNDS),
        json_schema_extra=bounded_overrides(TRAIN_BOUNDS),
    )
    max_steps: int | None = Field(None, ge=1, le=10_000_000)
    nproc: int = Field(
        1, ge=1, le=64, description="processes; more than 1 runs under torchrun; at most max_nproc (default: the "
        "server's CPU cores, the maximum shown here) and a divisor of optim.grad_accum",
        json_schema_extra={"maximum": os.cpu_count() or 1},
    )  # fmt: skip


JobState = Literal["running", "succeeded", "failed", "cancelled"]


class Job(BaseModel):
    id: str
    kind: Literal["replay", "train"]
    state: JobState
    created_utc: str
    finished_utc: str | None
    exit_code: int | None
    error: str | None
    params: dict[str, Scalar | dict[str, Scalar] | None]
    output: str = Field(description="output folder, relative to the server's root")


class JobDetail(Job):
    metrics: dict[str, float | int] | None = Field(description="the latest line of metrics.jsonl, if any")


class JobList(BaseModel):
    jobs: list[Job]


class JobLog(BaseModel):
    id: str
    lines: list[str]


class MetricsSeries(BaseModel):
    id: str
    points: list[dict[str, float | int]] = Field(description="metrics.jsonl lines (numbers only), in order")


class TrainConfigs(BaseModel):
    configs: list[str]


class DatasetList(BaseModel):
    datasets: list[str]
