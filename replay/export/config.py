"""Export settings: one schema per format, shipped as vrcap/configs/export.yaml; `--set KEY=VALUE` overrides.

Pydantic dataclasses like every other section (bounds and descriptions show in `vrcap config schema`);
``__post_init__`` repeats the checks so a bad value is one line naming the key and its range.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic.dataclasses import dataclass

from vrcap.config import load_config
from vrcap.errors import ConfigError

FORMATS = ("mcap", "xdf", "lerobot")
CODECS = {"av1": "libsvtav1", "h264": "libx264", "mjpeg": "copy"}  # mjpeg: the recorded JPEGs as they are
EPISODES = ("session", "task")
MCAP_COMPRESSION = ("lz4", "zstd", "none")
PIXEL_FORMATS = ("yuv420p", "yuv444p")
H264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
CONFIG_NAME = "export.yaml"


def _within(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g} (got {value})")


def _one_of(key: str, value: str, choices: tuple[str, ...] | dict[str, str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)} (got {value!r})")


@dataclass
class McapConfig:
    """MCAP files as foxglove-sdk's writer makes them."""

    compression: str = Field(
        "lz4", description="chunk compression: lz4 (what Foxglove streams fastest), zstd (smaller) or none"
    )
    chunk_mb: int = Field(
        4, ge=1, le=256, description="target uncompressed size of a chunk in MiB: readers seek by chunk"
    )

    def __post_init__(self) -> None:
        _one_of("mcap.compression", self.compression, MCAP_COMPRESSION)
        _within("mcap.chunk_mb", self.chunk_mb, 1, 256)


@dataclass
class XdfConfig:
    """XDF files as LabRecorder writes them."""

    chunk_seconds: float = Field(
        1.0,
        ge=0.01,
        le=3600,
        description="samples of a stream gathered into one Samples chunk (LabRecorder: ~1 s)",
    )
    clock_offset_interval_s: float = Field(
        5.0, ge=0.01, le=3600, description="a ClockOffset chunk per stream this often (LabRecorder's 5 s)"
    )

    def __post_init__(self) -> None:
        _within("xdf.chunk_seconds", self.chunk_seconds, 0.01, 3600)
        _within("xdf.clock_offset_interval_s", self.clock_offset_interval_s, 0.01, 3600)


@dataclass
class LeRobotConfig:
    """LeRobot v3.0 datasets: parquet steps and one mp4 per camera (docs/INTEROP.md)."""

    fps: float = Field(
        30.0,
        ge=1,
        le=1000,
        description="the step rate of the dataset: one parquet row and one video frame per step",
    )
    codec: str = Field(
        "av1",
        description="av1 (libsvtav1, LeRobot's default), h264 (libx264), or mjpeg (the recorded JPEGs copied: "
        "fastest, as recorded, larger files)",
    )
    crf: int = Field(
        10,
        ge=0,
        le=63,
        description="libsvtav1 constant rate factor: lower is better quality and bigger files",
    )
    preset: int = Field(8, ge=0, le=13, description="libsvtav1 preset, 0 slowest to 13 fastest")
    h264_crf: int = Field(15, ge=0, le=51, description="libx264 constant rate factor (0 is lossless)")
    h264_preset: str = Field("ultrafast", description="libx264 preset, ultrafast to veryslow")
    pix_fmt: str = Field(
        "yuv420p",
        description="yuv420p (what every player and LeRobot's default decoders take) or yuv444p (full colour)",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="encoder threads per camera; 0 lets the encoder choose from the CPU count",
    )
    episodes: str = Field(
        "session", description='"session": one episode per session; "task": one per instruction segment'
    )
    gop: int = Field(
        2,
        ge=1,
        le=1000,
        description="keyframe interval in frames (LeRobot uses 2, so random access decodes little)",
    )

    def __post_init__(self) -> None:
        _within("lerobot.fps", self.fps, 1, 1000)
        _one_of("lerobot.codec", self.codec, CODECS)
        _one_of("lerobot.episodes", self.episodes, EPISODES)
        _one_of("lerobot.pix_fmt", self.pix_fmt, PIXEL_FORMATS)
        _within("lerobot.crf", self.crf, 0, 63)
        _within("lerobot.preset", self.preset, 0, 13)
        _within("lerobot.h264_crf", self.h264_crf, 0, 51)
        _one_of("lerobot.h264_preset", self.h264_preset, H264_PRESETS)
        if self.pix_fmt == "yuv444p" and self.codec == "av1":
            raise ConfigError("lerobot.pix_fmt=yuv444p needs lerobot.codec=h264 (SVT-AV1 encodes 4:2:0 only)")
        _within("lerobot.threads", self.threads, 0, 256)
        _within("lerobot.gop", self.gop, 1, 1000)


@dataclass
class ExportConfig:
    """`vrcap export`: one section per format."""

    mcap: McapConfig = Field(default_factory=McapConfig, description="MCAP (Foxglove) settings")
    xdf: XdfConfig = Field(default_factory=XdfConfig, description="XDF (LabRecorder) settings")
    lerobot: LeRobotConfig = Field(default_factory=LeRobotConfig, description="LeRobot dataset settings")


def load_export_config(choice: Path | str | None = None, overrides: list[str] | None = None) -> ExportConfig:
    """Schema defaults ← export.yaml (or ``--config NAME|PATH``) ← ``--set`` overrides."""
    return load_config(ExportConfig, choice, overrides, default_name=CONFIG_NAME)
