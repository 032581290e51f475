"""The capture config: one dataclass per section of configs/capture.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from capture.openxr_source import OpenXRConfig
from capture.sim import SimConfig
from vrcap.errors import ConfigError
from vrcap.writer import WriterConfig

SOURCES = ("sim", "openxr")


@dataclass
class RecordConfig:
    """What `vrcap record` records, and for how long."""

    source: str = "sim"  # headset: "sim" (no hardware) or "openxr" (the running OpenXR runtime)
    audio: str = "sim"  # "sim", "none", or a microphone by name or index (see `vrcap devices`)
    cameras: list[str] = field(
        default_factory=list
    )  # NAME=SPEC each; empty = the sim's cameras (sim.cameras)
    duration_s: float = 0.0  # stop after this many seconds; 0 records until Ctrl-C / SIGTERM
    jpeg_quality: int = 90  # camera frames are stored as JPEG at this quality (1-100)
    status_interval_s: float = 0.25  # how often the live status line refreshes

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"record.source must be one of {', '.join(SOURCES)} (got {self.source!r})")
        if self.duration_s < 0:
            raise ConfigError(
                f"record.duration_s must be >= 0, 0 meaning until stopped (got {self.duration_s})"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"record.jpeg_quality must be between 1 and 100 (got {self.jpeg_quality})")
        if self.status_interval_s <= 0:
            raise ConfigError(f"record.status_interval_s must be > 0 (got {self.status_interval_s})")
        if not str(self.audio).strip():
            raise ConfigError(
                "record.audio must be 'sim', 'none' or a microphone name/index (see `vrcap devices`)"
            )


@dataclass
class CaptureConfig:
    record: RecordConfig = field(default_factory=RecordConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    openxr: OpenXRConfig = field(default_factory=OpenXRConfig)
