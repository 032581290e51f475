"""Training configuration: one dataclass per section, read from configs/train/*.yaml with `key=value` overrides.

Shapes that the data decides (camera names and size, mel frames, text length, vocabulary) are written in the
model section so that a model can be built without data (`vrcap estimate`, the meta device) and so that a
dataset that does not fit is refused with the name of the field, instead of failing deep inside a matmul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vrcap.config import load_config
from vrcap.errors import ConfigError

OUTPUTS = ("animation", "audio", "internal_text", "external_text")


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


@dataclass
class ModelConfig:
    d_model: int = 256  # width of every step token and of the transformer
    n_layers: int = 4  # causal transformer blocks over steps
    n_heads: int = 4  # attention heads; must divide d_model
    mlp_ratio: float = 4.0  # hidden width of each block's MLP, as a multiple of d_model
    dropout: float = 0.0  # dropout in the transformer (0 keeps small runs exactly reproducible)
    max_window: int = 64  # longest window (steps) the positional table covers; >= data.window
    cameras: list[str] = field(default_factory=lambda: ["left", "right"])  # camera.<name> inputs; [] = none
    camera_height: int = 64  # H of camera.<name> in the shards (replay's resize + crop)
    camera_width: int = 64  # W of camera.<name>
    patch_size: int = 16  # camera patches are patch_size x patch_size pixels; must divide H and W
    mel_frames: int = 3  # M: mel frames per step in audio.mel
    mel_bins: int = 80  # mel bins in audio.mel
    text_len: int = 64  # L: token slots per step in text.internal / text.external
    vocab_size: int = 259  # byte-level tokenizer: 256 bytes + specials, pad id 0
    text_decoder_layers: int = 1  # small causal decoder per text head, over the L tokens of the next step

    def __post_init__(self) -> None:
        _positive(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, max_window=self.max_window
        )
        _positive(mlp_ratio=self.mlp_ratio, patch_size=self.patch_size, mel_frames=self.mel_frames)
        _positive(mel_bins=self.mel_bins, text_len=self.text_len, vocab_size=self.vocab_size)
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
    window: int = 32  # steps per training window (T)
    stride: int = 16  # steps between window starts; 0 = window (no overlap)
    batch_size: int = 8  # windows per micro-batch on each process
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    prefetch: int = (
        2  # with num_workers 0: batches one background thread loads ahead (0 = load inside the step)
    )
    modalities: list[str] = field(default_factory=list)  # dataset modalities to load; [] = all
    split: str = "train"  # manifest split to train on

    def __post_init__(self) -> None:
        _positive(window=self.window, batch_size=self.batch_size)
        if self.stride < 0 or self.num_workers < 0 or self.prefetch < 0:
            raise ConfigError("data.stride, data.num_workers and data.prefetch must be >= 0")


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    warmup_steps: int = 20  # linear warm-up from 0 to lr
    weight_decay: float = 0.01  # AdamW decay, on matrices only (not norms, biases, embeddings of "missing")
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    grad_accum: int = (
        1  # micro-batches per optimizer step on one process; divided by the world size under torchrun
    )

    def __post_init__(self) -> None:
        _positive(lr=self.lr, grad_accum=self.grad_accum)
        if self.warmup_steps < 0 or self.grad_clip < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                "optim.warmup_steps and optim.grad_clip must be >= 0, optim.min_lr_ratio in [0, 1]"
            )


@dataclass
class LossWeights:
    animation: float = 1.0  # next-step body pose (pose + hands)
    audio: float = 1.0  # next-step mel frames
    internal_text: float = 1.0  # next-step internal text, token by token
    external_text: float = 1.0  # next-step external text, token by token

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
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    max_steps: int = 1000  # optimizer steps in all (the cosine's length)
    log_interval: int = 10  # steps between metric lines (TensorBoard + metrics.jsonl)
    save_interval: int = 500  # steps between checkpoints; a final one is always written
    keep_last: int = 3  # checkpoints kept (older ones are deleted after a newer one is safely written)
    seed: int = 0  # seeds python, numpy, torch and the data order; each process adds its rank
    device: str = "auto"  # auto (cuda when present), cpu, cuda, cuda:N
    precision: str = "auto"  # auto (bf16 autocast on GPUs that support it), bf16, fp32
    compile: bool = False  # torch.compile the model
    strategy: str = "ddp"  # under torchrun: ddp, or fsdp (shards parameters; for the 1b config)
    threads: int = 0  # torch intra-op threads; 0 = torch's default

    def __post_init__(self) -> None:
        _positive(max_steps=self.max_steps, log_interval=self.log_interval, save_interval=self.save_interval)
        _positive(keep_last=self.keep_last)
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


def load_train_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """configs/train/small.yaml unless a file is given; ``key=value`` overrides on top."""
    return load_config(TrainConfig, path, overrides, default_name="train/small.yaml")
