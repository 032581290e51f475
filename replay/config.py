"""The replay config: one dataclass per section of vrcap/configs/replay.yaml.

Every field that changes what lands in a shard is part of ``shard_config_hash``; a re-run converts a session
again exactly when that hash (or the session itself) changed. Splits only change the manifest, so they are
hashed apart and never force a re-conversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic.dataclasses import dataclass

from vrcap.config import load_config
from vrcap.errors import ConfigError

# Bumped whenever the converter's output changes for the same input and config (an algorithm fix).
CONVERTER_VERSION = 3  # 2: log-mel's filterbank product in float64 (byte-identical across BLAS set-ups);
# 3: its FFT in float32 by scipy.fft (numpy's float32 FFT gives other last bits)
FRAMES = ("stage", "head")
BUILDERS = ("auto", "process", "thread")  # convert.builder (replay/chunk_builder.py)


@dataclass
class StepConfig:
    """The one clock every stream is resampled onto."""

    rate_hz: float = Field(
        30.0,
        ge=1,
        le=1000,
        description="steps per second; 30 matches the cameras, every 3rd frame of a 90 Hz headset",
    )

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 1000.0:
            raise ConfigError(
                f"step.rate_hz must be between 1 and 1000 (got {self.rate_hz}); 30 is the default"
            )


@dataclass
class PoseConfig:
    """Head, controllers and hand joints."""

    frame: str = Field(
        "stage", description='"stage" (the room) or "head" (everything relative to the head at the same step)'
    )
    max_gap_periods: float = Field(
        1.5,
        ge=1,
        le=1000,
        description="a step between two samples further apart than this many source periods is masked",
    )

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ConfigError(f"pose.frame must be one of {', '.join(FRAMES)} (got {self.frame!r})")
        if self.max_gap_periods < 1.0:
            raise ConfigError(
                f"pose.max_gap_periods must be >= 1 (got {self.max_gap_periods}); 1.5 tolerates jitter"
            )


@dataclass
class ImageConfig:
    """Camera frames: decoded, resized on the shorter side, center-cropped, stored uint8 RGB."""

    size: int = Field(
        64, ge=8, le=2048, description="pixels of the shorter side after resizing (and of the square crop)"
    )
    crop: bool = Field(
        True,
        description="True: center-crop to size x size; False: keep the aspect ratio (the longer side scales)",
    )
    tolerance_steps: float = Field(
        0.5, gt=0, le=2, description="a frame counts for a step only within this many steps of its time"
    )

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 2048:
            raise ConfigError(
                f"images.size must be between 8 and 2048 pixels (got {self.size}); 64 is the default"
            )
        if not 0.0 < self.tolerance_steps <= 2.0:
            raise ConfigError(
                f"images.tolerance_steps must be in (0, 2] (got {self.tolerance_steps}); 0.5 = half a step"
            )


@dataclass
class AudioConfig:
    """Log-mel features computed with numpy (Hann window, power spectrum, triangular HTK mel filters)."""

    n_mels: int = Field(80, ge=1, le=512, description="mel bins")
    window_ms: float = Field(25.0, ge=1, le=200, description="analysis window")
    hop_ms: float = Field(
        10.0, ge=1, le=200, description="frame hop; a step of 33.3 ms holds floor(33.3 / 10) = 3 frames"
    )
    fmin_hz: float = Field(0.0, ge=0, le=1e6, description="lowest filter edge")
    fmax_hz: float = Field(0.0, ge=0, le=1e6, description="highest filter edge; 0 = half the sample rate")
    keep_pcm: bool = Field(True, description="also store the step's raw samples as audio.pcm (int16)")

    def __post_init__(self) -> None:
        if not 1 <= self.n_mels <= 512:
            raise ConfigError(
                f"audio.n_mels must be between 1 and 512 (got {self.n_mels}); 80 is the default"
            )
        if not 1.0 <= self.window_ms <= 200.0:
            raise ConfigError(
                f"audio.window_ms must be between 1 and 200 (got {self.window_ms}); 25 is usual"
            )
        if not 1.0 <= self.hop_ms <= self.window_ms:
            raise ConfigError(
                f"audio.hop_ms must be between 1 and window_ms (got {self.hop_ms}); 10 is usual"
            )
        if self.fmin_hz < 0 or self.fmax_hz < 0 or (self.fmax_hz and self.fmax_hz <= self.fmin_hz):
            raise ConfigError(
                f"audio.fmin_hz/fmax_hz must satisfy 0 <= fmin < fmax (got {self.fmin_hz}, {self.fmax_hz}); "
                "fmax 0 means half the sample rate"
            )


@dataclass
class TextConfig:
    """Annotations, tokenized byte by byte (no vocabulary to download)."""

    max_tokens: int = Field(
        64,
        ge=4,
        le=65536,
        description="L: tokens per step and channel; longer text is cut (counted in the manifest)",
    )

    def __post_init__(self) -> None:
        if not 4 <= self.max_tokens <= 65536:
            raise ConfigError(
                f"text.max_tokens must be between 4 and 65536 (got {self.max_tokens}); 64 is usual"
            )


@dataclass
class SplitConfig:
    """Whole sessions by a hash of their name when there are enough, else time blocks inside each session
    (replay/splits.py): stable across runs and machines, and no split silently empty."""

    train: float = Field(0.8, ge=0, le=1, description="share of sessions in the training split")
    val: float = Field(0.1, ge=0, le=1, description="share in the validation split")
    test: float = Field(0.1, ge=0, le=1, description="share in the test split")
    salt: str = Field("", description="change to draw another split")
    min_sessions: int = Field(
        10,
        ge=1,
        le=100000,
        description="with at least this many sessions split whole sessions, else time blocks in each",
    )
    gap_steps: int = Field(
        64,
        ge=0,
        le=1_000_000,
        description="time blocks: steps left out between blocks; >= the training window, so none leaks",
    )

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
            raise ConfigError(
                f"split.train + split.val + split.test must be 1 with none negative (got {parts}); e.g. 0.8/0.1/0.1"
            )
        if self.min_sessions < 1:
            raise ConfigError(f"split.min_sessions must be >= 1 (got {self.min_sessions})")
        if self.gap_steps < 0:
            raise ConfigError(
                f"split.gap_steps must be >= 0 (got {self.gap_steps}); e.g. the training window"
            )


@dataclass
class ConvertConfig:
    """How a session is converted (not what lands in the shard: hashed apart, changing it converts nothing)."""

    chunk_s: float = Field(
        10.0, ge=0.1, le=3600.0,
        description="recorded seconds built and written at a time; memory holds about three chunks",
    )  # fmt: skip
    lookahead_s: float = Field(
        2.0, ge=0.1, le=60.0,
        description="a chunk is built once packets run this far past it (samples arriving late)",
    )  # fmt: skip
    builder: str = Field(
        "auto",
        description='where chunks are built: "process" (beside the reader, on another core), "thread", or '
        '"auto" (a process unless this is a worker of --workers N or Dask, the session has cameras, or the '
        "machine has one core)",
    )

    def __post_init__(self) -> None:
        if not 0.1 <= self.chunk_s <= 3600.0:
            raise ConfigError(
                f"convert.chunk_s must be between 0.1 and 3600 s (got {self.chunk_s}); 10 is usual"
            )
        if not 0.1 <= self.lookahead_s <= 60.0:
            raise ConfigError(
                f"convert.lookahead_s must be between 0.1 and 60 s (got {self.lookahead_s}); 2 is usual"
            )
        if self.builder not in BUILDERS:
            raise ConfigError(f"convert.builder must be one of {', '.join(BUILDERS)} (got {self.builder!r})")


@dataclass
class ReplayConfig:
    step: StepConfig = Field(
        default_factory=StepConfig, description="the step clock every stream is resampled onto"
    )
    pose: PoseConfig = Field(default_factory=PoseConfig, description="head, controllers and hand joints")
    images: ImageConfig = Field(default_factory=ImageConfig, description="camera frames")
    audio: AudioConfig = Field(default_factory=AudioConfig, description="log-mel features")
    text: TextConfig = Field(default_factory=TextConfig, description="annotations as byte tokens")
    split: SplitConfig = Field(
        default_factory=SplitConfig, description="train/val/test assignment of sessions"
    )
    convert: ConvertConfig = Field(
        default_factory=ConvertConfig,
        description="how conversion runs (chunking); changing it converts nothing again",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def shard_config_hash(self) -> str:
        """Hash of everything that shapes a shard (not the split, not how it is converted), plus the converter's version."""
        data = self.to_dict()
        data.pop("split")
        data.pop("convert")
        data["converter_version"] = CONVERTER_VERSION
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_replay_config(path: Path | None = None, overrides: list[str] | None = None) -> ReplayConfig:
    """Defaults ← vrcap/configs/replay.yaml (or ``path``) ← ``key=value`` overrides."""
    return load_config(ReplayConfig, path, overrides, default_name="replay.yaml")
