"""The capture config: one dataclass per section of vrcap/configs/capture.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic.dataclasses import dataclass

from capture.openxr_source import OpenXRConfig
from capture.sim import SimConfig
from capture.webxr_source import WebXRConfig
from vrcap.config import load_config
from vrcap.errors import ConfigError
from vrcap.writer import WriterConfig

SOURCES = ("sim", "openxr", "webxr")


@dataclass
class RecordConfig:
    """What `vrcap record` records, and for how long."""

    source: str = Field(
        "sim",
        description='headset: "sim" (no hardware), "openxr" (the PC runtime), "webxr" (the page, via serve)',
    )
    audio: str = Field(
        "sim", description='"sim", "none", "webxr" (the page\'s microphone) or a microphone name/index'
    )
    cameras: list[str] = Field(
        default_factory=list, description="NAME=SPEC each; empty = the sim's cameras (sim.cameras)"
    )
    duration_s: float = Field(
        0.0, ge=0, le=7 * 86400, description="stop after this many seconds; 0 records until Ctrl-C / SIGTERM"
    )
    jpeg_quality: int = Field(
        90, ge=1, le=100, description="camera frames are stored as JPEG at this quality (1-100)"
    )
    status_interval_s: float = Field(
        0.25, gt=0, le=60, description="how often the live status line refreshes"
    )
    lsl: list[str] = Field(
        default_factory=list, description="LSL streams to record, by name or XPath query (--lsl)"
    )
    lsl_out: bool = Field(
        False, description="publish the recording's streams as LSL outlets while recording (--lsl-out)"
    )
    lsl_out_wait_s: float = Field(
        0.0,
        ge=0,
        le=600,
        description="with lsl_out: wait up to this long for a consumer on every outlet first",
    )
    offline: bool = Field(
        False, description="sim only: write duration_s as fast as the CPU allows (capture/offline.py)"
    )
    nice: int = Field(
        -5,
        ge=-20,
        le=19,
        description="`vrcap record` asks for this niceness (< 0 needs CAP_SYS_NICE or RLIMIT_NICE, else ignored)",
    )
    rt_priority: int = Field(
        0,
        ge=0,
        le=99,
        description="`vrcap record` asks for SCHED_RR at this priority (0 = off; needs RLIMIT_RTPRIO)",
    )

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"record.source must be one of {', '.join(SOURCES)} (got {self.source!r})")
        if self.duration_s < 0:
            raise ConfigError(
                f"record.duration_s must be >= 0, 0 meaning until stopped (got {self.duration_s})"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"record.jpeg_quality must be between 1 and 100 (got {self.jpeg_quality})")
        if self.lsl_out_wait_s < 0:
            raise ConfigError(f"record.lsl_out_wait_s must be >= 0 (got {self.lsl_out_wait_s})")
        if self.status_interval_s <= 0:
            raise ConfigError(f"record.status_interval_s must be > 0 (got {self.status_interval_s})")
        if self.audio == "webxr" and self.source != "webxr":
            raise ConfigError(
                "record.audio 'webxr' is the headset page's microphone: it needs record.source webxr"
            )
        if not str(self.audio).strip():
            raise ConfigError(
                "record.audio must be 'sim', 'none' or a microphone name/index (see `vrcap devices`)"
            )


@dataclass
class CaptureConfig:
    record: RecordConfig = Field(
        default_factory=RecordConfig, description="what `vrcap record` records, and for how long"
    )
    writer: WriterConfig = Field(
        default_factory=WriterConfig,
        description="how the session writer trades durability, file size and speed",
    )
    sim: SimConfig = Field(
        default_factory=SimConfig,
        description="the simulated headset, hands, microphone and cameras (record.source: sim)",
    )
    openxr: OpenXRConfig = Field(
        default_factory=OpenXRConfig, description="the OpenXR source (record.source: openxr)"
    )
    webxr: WebXRConfig = Field(
        default_factory=WebXRConfig, description="the headset's browser as a source (record.source: webxr)"
    )


def load_capture_config(path: Path | str | None = None, overrides: list[str] | None = None) -> CaptureConfig:
    """The shipped capture.yaml (or a NAME or PATH) with ``key=value`` overrides on top."""
    return load_config(CaptureConfig, path, overrides, default_name="capture.yaml")
