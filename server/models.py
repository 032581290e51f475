"""Request and response bodies of the API: one pydantic class each, requests refuse unknown fields.

Request models check shape and type only; meaning (does the session exist, is the config key known) is checked
by the route, which can say which one is wrong and how to fix it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


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
    session: str = Field(min_length=1, max_length=128, description="new session name (letters, digits, -_.)")
    source: Literal["sim", "openxr"] = "sim"
    audio: str = Field("sim", min_length=1, max_length=200, description="'sim', 'none' or a microphone")
    cameras: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="NAME=SPEC each, SPEC a device index, /dev/videoN or an http/rtsp/udp/tcp URL; "
        "empty = the simulator's cameras",
    )
    duration_s: float | None = Field(None, gt=0, le=86400, description="stop on its own after this long")
    overrides: dict[str, Scalar] = Field(
        default_factory=dict,
        max_length=32,
        description='capture config overrides by dotted key, e.g. {"sim.camera_fps": 15}',
    )


class Incident(BaseModel):
    stream: str | None = None
    kind: str | None = None
    message: str | None = None
    t: int | None = None


class LiveStatsBody(BaseModel):
    session: str
    state: str
    elapsed_s: float
    frames: int
    dropped_frames: int
    samples: dict[str, int]
    drops: dict[str, int]
    total_drops: int
    queue_packets: int
    queue_mb: float
    bytes_written: int
    write_mb_s: float
    audio_dbfs: float | None
    clocks: dict[str, dict[str, float]]
    incidents: list[Incident]
    error: str | None


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
    stats: LiveStatsBody | None = None
    result: RecordingResultBody | None = None
    error: str | None = None


class AnnotationIn(Request):
    text: str = Field(min_length=1, max_length=4000)
    kind: Literal["instruction", "transcript", "marker"] = "marker"
    channel: Literal["internal", "external"] = "external"


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
    session: str = Field(min_length=1, max_length=128, description="a session under <root>/sessions")
    dataset: str | None = Field(
        None, min_length=1, max_length=128, description="output name under <root>/datasets; default: session"
    )
    overrides: dict[str, Scalar] = Field(default_factory=dict, max_length=32)


class TrainJobIn(Request):
    config: str = Field(
        min_length=1, max_length=64, description="a config name from configs/train, e.g. tiny"
    )
    dataset: str = Field(min_length=1, max_length=128, description="a dataset under <root>/datasets")
    overrides: dict[str, Scalar] = Field(
        default_factory=dict, max_length=32, description="config keys to change, checked against the schema"
    )
    max_steps: int | None = Field(None, ge=1, le=10_000_000)
    nproc: int = Field(1, ge=1, le=64, description="processes; more than 1 runs under torchrun")


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
