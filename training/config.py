"""Training configuration: one dataclass per section, read from vrcap/configs/train/*.yaml with `key=value` overrides.

Shapes that the data decides (camera names and size, mel frames, text length, vocabulary) are written in the
model section so that a model can be built without data (`vrcap estimate`, the meta device) and so that a
dataset that does not fit is refused with the name of the field, instead of failing deep inside a matmul.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic.dataclasses import dataclass

from vrcap.config import load_config
from vrcap.errors import ConfigError

OUTPUTS = ("animation", "audio", "internal_text", "external_text")


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


@dataclass
class ModelConfig:
    d_model: int = Field(256, ge=1, le=65536, description="width of every step token and of the transformer")
    n_layers: int = Field(4, ge=1, le=1024, description="causal transformer blocks over steps")
    n_heads: int = Field(4, ge=1, le=1024, description="attention heads; must divide d_model")
    mlp_ratio: float = Field(
        4.0, gt=0, le=64, description="hidden width of each block's MLP, as a multiple of d_model"
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout in the transformer (0 keeps small runs exactly reproducible)"
    )
    max_window: int = Field(
        64, ge=1, le=65536, description="longest window (steps) the positional table covers; >= data.window"
    )
    cameras: list[str] = Field(
        default_factory=lambda: ["left", "right"], description="camera.<name> inputs; [] = none"
    )
    camera_height: int = Field(
        64, ge=1, le=4096, description="H of camera.<name> in the shards (replay's resize + crop)"
    )
    camera_width: int = Field(64, ge=1, le=4096, description="W of camera.<name>")
    patch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="camera patches are patch_size x patch_size pixels; must divide H and W",
    )
    mel_frames: int = Field(3, ge=1, le=64, description="M: mel frames per step in audio.mel")
    mel_bins: int = Field(80, ge=1, le=512, description="mel bins in audio.mel")
    text_len: int = Field(
        64, ge=1, le=65536, description="L: token slots per step in text.internal / text.external"
    )
    vocab_size: int = Field(
        259, ge=1, le=2**20, description="byte-level tokenizer: 256 bytes + specials, pad id 0"
    )
    text_decoder_layers: int = Field(
        1, ge=0, le=64, description="small causal decoder per text head, over the L tokens of the next step"
    )
    horizon: int = Field(
        15, ge=1, le=4096,
        description="K: future steps the animation and audio heads predict at once (15 = 0.5 s at 30 Hz)",
    )  # fmt: skip
    animation_base: str = Field(
        "const_vel",
        description="what the animation head's 0 means: hold (the pose stays) or const_vel (it keeps the last "
        "step's velocity); the head predicts the normalised change from it",
    )

    animation_head: str = Field(
        "regression",
        description="regression (squared error on the normalised changes) or tokens (each coordinate a "
        "quantized bin, cross-entropy; training/token_head.py)",
    )
    token_bins: int = Field(
        8192,
        ge=16,
        le=1048576,
        description="tokens head: bins per coordinate over [-token_range, token_range]",
    )
    token_coarse: int = Field(
        128,
        ge=2,
        le=65536,
        description="tokens head: coarse classes (token_bins / token_coarse fine ones in each)",
    )
    token_range: float = Field(
        4.0,
        gt=0,
        le=1000,
        description="tokens head: bins cover this many RMS changes either side of the base",
    )
    token_sample: int = Field(
        512, ge=1, le=10**7, description="tokens head: coordinates scored per training batch, drawn at random"
    )

    def __post_init__(self) -> None:
        if self.animation_head not in ("regression", "tokens"):
            raise ConfigError(
                f"model.animation_head must be regression or tokens, got {self.animation_head!r}"
            )
        if self.token_bins % self.token_coarse:
            raise ConfigError(
                f"model.token_bins ({self.token_bins}) must be a multiple of model.token_coarse ({self.token_coarse})"
            )
        if self.animation_base not in ("hold", "const_vel"):
            raise ConfigError(f"model.animation_base must be hold or const_vel, got {self.animation_base!r}")
        _positive(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, max_window=self.max_window
        )
        _positive(mlp_ratio=self.mlp_ratio, patch_size=self.patch_size, mel_frames=self.mel_frames)
        _positive(mel_bins=self.mel_bins, text_len=self.text_len, vocab_size=self.vocab_size)
        _positive(horizon=self.horizon)
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.n_heads ({self.n_heads}) must divide model.d_model ({self.d_model})")
        if self.cameras and (self.camera_height % self.patch_size or self.camera_width % self.patch_size):
            raise ConfigError(
                f"model.patch_size ({self.patch_size}) must divide model.camera_height ({self.camera_height}) "
                f"and model.camera_width ({self.camera_width})"
            )
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class DataConfig:
    window: int = Field(32, ge=1, le=65536, description="steps per training window (T)")
    stride: int = Field(8, ge=0, le=65536, description="steps between window starts; 0 = window (no overlap)")
    batch_size: int = Field(8, ge=1, le=65536, description="windows per micro-batch on each process")
    num_workers: int = Field(
        0, ge=0, le=256, description="DataLoader worker processes (0 = load in the training process)"
    )
    prefetch: int = Field(
        2,
        ge=0,
        le=64,
        description="with num_workers 0: batches one background thread loads ahead (0 = load inside the step)",
    )
    modalities: list[str] = Field(default_factory=list, description="dataset modalities to load; [] = all")
    split: str = Field("train", description="manifest split to train on")

    def __post_init__(self) -> None:
        _positive(window=self.window, batch_size=self.batch_size)
        if self.stride < 0 or self.num_workers < 0 or self.prefetch < 0:
            raise ConfigError("data.stride, data.num_workers and data.prefetch must be >= 0")


@dataclass
class OptimConfig:
    # The upper bound only keeps lr finite: tests/training set 1e30 on purpose to provoke a non-finite loss.
    lr: float = Field(1e-3, gt=0, le=1e30, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine ends at lr * min_lr_ratio")
    warmup_steps: int = Field(50, ge=0, le=10**9, description="linear warm-up from 0 to lr")
    weight_decay: float = Field(
        0.01,
        ge=0,
        le=10,
        description='AdamW decay, on matrices only (not norms, biases, embeddings of "missing")',
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW's first-moment decay")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW's second-moment decay")
    grad_clip: float = Field(
        1.0, ge=0, le=1e6, description="clip the global gradient norm to this; 0 = no clipping"
    )
    grad_accum: int = Field(
        1,
        ge=1,
        le=65536,
        description="micro-batches per optimizer step on one process; divided by the world size under torchrun",
    )

    def __post_init__(self) -> None:
        _positive(lr=self.lr, grad_accum=self.grad_accum)
        if self.warmup_steps < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                "optim.warmup_steps and optim.grad_clip must be >= 0, optim.min_lr_ratio in [0, 1]"
            )


@dataclass
class LossWeights:
    animation: float = Field(1.0, ge=0, le=1000, description="next-step body pose (pose + hands)")
    audio: float = Field(1.0, ge=0, le=1000, description="next-step mel frames")
    internal_text: float = Field(1.0, ge=0, le=1000, description="next-step internal text, token by token")
    external_text: float = Field(1.0, ge=0, le=1000, description="next-step external text, token by token")

    def __post_init__(self) -> None:
        for name in OUTPUTS:
            if getattr(self, name) < 0:
                raise ConfigError(f"loss_weights.{name} must be >= 0, got {getattr(self, name)}")
        if not any(getattr(self, name) > 0 for name in OUTPUTS):
            raise ConfigError("every loss weight is 0: set at least one of loss_weights.* above 0")

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in OUTPUTS}


@dataclass
class TrainConfig:
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="the model's shape (and the data shapes it expects)"
    )
    data: DataConfig = Field(default_factory=DataConfig, description="windows, batches and loading")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="AdamW and its cosine schedule")
    loss_weights: LossWeights = Field(
        default_factory=LossWeights, description="how much each output's loss counts"
    )
    max_steps: int = Field(2000, ge=1, le=10**10, description="optimizer steps in all (the cosine's length)")
    log_interval: int = Field(
        10, ge=1, le=10**9, description="steps between metric lines (TensorBoard + metrics.jsonl)"
    )
    save_interval: int = Field(
        500, ge=1, le=10**9, description="steps between checkpoints; a final one is always written"
    )
    keep_last: int = Field(
        3,
        ge=1,
        le=1000,
        description="checkpoints kept (older ones are deleted after a newer one is safely written)",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="seeds python, numpy, torch and the data order; each process adds its rank",
    )
    device: str = Field("auto", description="auto (cuda when present), cpu, cuda, cuda:N")
    precision: str = Field("auto", description="auto (bf16 autocast on GPUs that support it), bf16, fp32")
    compile: bool = Field(False, description="torch.compile the model")
    strategy: str = Field(
        "ddp", description="under torchrun: ddp, or fsdp (shards parameters; for the 1b config)"
    )
    threads: int = Field(0, ge=0, le=1024, description="torch intra-op threads; 0 = torch's default")
    eval_interval: int = Field(
        100,
        ge=0,
        le=10**9,
        description="steps between validation passes (and one at the end); 0 = no validation",
    )
    eval_split: str = Field("val", description="the held-out split the validation pass reads")
    eval_max_windows: int = Field(
        64, ge=0, le=10**9, description="windows per validation pass, spread evenly over the split; 0 = all"
    )
    best_metric: str = Field(
        "loss/total", description="val metric kept as checkpoints/best.pt (accuracy: higher is better)"
    )
    early_stop_patience: int = Field(
        0,
        ge=0,
        le=10**6,
        description="stop after this many val passes without a better best_metric; 0 = never",
    )
    max_minutes: float = Field(
        0.0,
        ge=0,
        le=10**7,
        description="wall-clock budget: validate, checkpoint and stop once spent; 0 = none",
    )
    max_cpu_minutes: float = Field(
        0.0, ge=0, le=10**7,
        description="CPU-time budget of each process (all its threads), the same way; 0 = none",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _positive(max_steps=self.max_steps, log_interval=self.log_interval, save_interval=self.save_interval)
        _positive(keep_last=self.keep_last)
        if self.eval_interval < 0 or self.eval_max_windows < 0 or self.early_stop_patience < 0:
            raise ConfigError("eval_interval, eval_max_windows and early_stop_patience must be >= 0")
        if self.max_minutes < 0 or self.max_cpu_minutes < 0:
            raise ConfigError("max_minutes and max_cpu_minutes must be >= 0 (0 = no budget)")
        if self.eval_split not in ("train", "val", "test"):
            raise ConfigError(f"eval_split must be train, val or test, got {self.eval_split!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"strategy must be ddp or fsdp, got {self.strategy!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.data.window > self.model.max_window:
            raise ConfigError(
                f"data.window ({self.data.window}) is longer than model.max_window ({self.model.max_window}); "
                "raise model.max_window or shorten the window"
            )


def load_train_config(path: Path | str | None, overrides: list[str] | None = None) -> TrainConfig:
    """The shipped small.yaml (equal to these defaults) unless a NAME or PATH is given; overrides on top."""
    return load_config(TrainConfig, path, overrides, default_name="train/small.yaml")
