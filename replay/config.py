"""The replay config: one dataclass per section of configs/replay.yaml.

Every field that changes what lands in a shard is part of ``shard_config_hash``; a re-run converts a session
again exactly when that hash (or the session itself) changed. Splits only change the manifest, so they are
hashed apart and never force a re-conversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrcap.config import load_config
from vrcap.errors import ConfigError

# Bumped whenever the converter's output changes for the same input and config (an algorithm fix).
CONVERTER_VERSION = 1
FRAMES = ("stage", "head")


@dataclass
class StepConfig:
    """The one clock every stream is resampled onto."""

    rate_hz: float = 30.0  # steps per second; 30 matches the cameras, every 3rd frame of a 90 Hz headset

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 1000.0:
            raise ConfigError(
                f"step.rate_hz must be between 1 and 1000 (got {self.rate_hz}); 30 is the default"
            )


@dataclass
class PoseConfig:
    """Head, controllers and hand joints."""

    frame: str = "stage"  # "stage" (the room) or "head" (everything relative to the head at the same step)
    max_gap_periods: float = (
        1.5  # a step between two samples further apart than this many source periods is masked
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

    size: int = 64  # pixels of the shorter side after resizing (and of the square crop)
    crop: bool = (
        True  # True: center-crop to size x size; False: keep the aspect ratio (the longer side scales)
    )
    tolerance_steps: float = 0.5  # a frame counts for a step only within this many steps of its time

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

    n_mels: int = 80  # mel bins
    window_ms: float = 25.0  # analysis window
    hop_ms: float = 10.0  # frame hop; a step of 33.3 ms holds floor(33.3 / 10) = 3 frames
    fmin_hz: float = 0.0  # lowest filter edge
    fmax_hz: float = 0.0  # highest filter edge; 0 = half the sample rate
    keep_pcm: bool = True  # also store the step's raw samples as audio.pcm (int16)

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

    max_tokens: int = 64  # L: tokens per step and channel; longer text is cut (counted in the manifest)

    def __post_init__(self) -> None:
        if not 4 <= self.max_tokens <= 65536:
            raise ConfigError(
                f"text.max_tokens must be between 4 and 65536 (got {self.max_tokens}); 64 is usual"
            )


@dataclass
class SplitConfig:
    """Sessions go to train/val/test by a hash of their name: stable across runs and machines."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    salt: str = ""  # change to draw another split
    min_sessions: int = 3  # with fewer converted sessions, all go to train (a note says so)

    def __post_init__(self) -> None:
        parts = (self.train, self.val, self.test)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
            raise ConfigError(
                f"split.train + split.val + split.test must be 1 with none negative (got {parts}); e.g. 0.8/0.1/0.1"
            )
        if self.min_sessions < 1:
            raise ConfigError(f"split.min_sessions must be >= 1 (got {self.min_sessions})")


@dataclass
class ReplayConfig:
    step: StepConfig = field(default_factory=StepConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    images: ImageConfig = field(default_factory=ImageConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    split: SplitConfig = field(default_factory=SplitConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def shard_config_hash(self) -> str:
        """Hash of everything that shapes a shard (not the split), plus the converter's version."""
        data = self.to_dict()
        data.pop("split")
        data["converter_version"] = CONVERTER_VERSION
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_replay_config(path: Path | None = None, overrides: list[str] | None = None) -> ReplayConfig:
    """Defaults ← configs/replay.yaml (or ``path``) ← ``key=value`` overrides."""
    return load_config(ReplayConfig, path, overrides, default_name="replay.yaml")
