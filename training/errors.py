"""Errors of the training package; each message names the problem, the numbers, and the fix.

VrcapError (vrcap.errors)
├── UsageError
│   ├── DatasetTooSmall       fewer windows than one global batch
│   ├── DataMismatch          the manifest does not fit the model config (names the field)
│   ├── NoTargets             no weighted output has a target in the split (text-only mode on text-less data)
│   └── RunFolderInUse        --out holds another run
└── TrainingError             training cannot go on
    ├── NonFiniteLoss         NaN/Inf loss: the step and the last good checkpoint
    └── CheckpointError       no usable checkpoint where one was asked for
"""

from __future__ import annotations

from pathlib import Path

from vrcap.errors import UsageError, VrcapError


class TrainingError(VrcapError):
    """Training stopped; what was checkpointed before stays usable."""


class DatasetTooSmall(UsageError):
    def __init__(self, windows: int, global_batch: int, split: str, window: int, stride: int) -> None:
        super().__init__(
            f"the {split!r} split has {windows} windows of {window} steps (stride {stride}), fewer than one "
            f"global batch of {global_batch}; record more, or lower data.batch_size, data.window or data.stride"
        )


class DataMismatch(UsageError):
    def __init__(self, field: str, config_value: object, data_value: object, data_dir: Path) -> None:
        super().__init__(
            f"the dataset in {data_dir} does not match the model config: {field} is {config_value!r} in the "
            f"config but {data_value!r} in the data; set {field}={data_value!r} (a new model) or convert the "
            "sessions again with matching replay settings"
        )


class NoTargets(UsageError):
    def __init__(self, outputs: list[str], split: str) -> None:
        names = ", ".join(outputs)
        super().__init__(
            f"the {split!r} split has no targets for {names}, the only outputs with a loss weight above 0; "
            f"record sessions with that data (e.g. `vrcap annotate` for text) or weight another output"
        )


class RunFolderInUse(UsageError):
    def __init__(self, out_dir: Path, step: int | None) -> None:
        held = f"a run at step {step}" if step is not None else "another run's files"
        super().__init__(
            f"--out {out_dir} holds {held}; continue it with --resume auto, or pick another --out"
        )


class NonFiniteLoss(TrainingError):
    def __init__(self, step: int, losses: dict[str, float], last_checkpoint: Path | None) -> None:
        parts = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        where = (
            f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was saved"
        )
        super().__init__(
            f"loss is not finite at step {step} ({parts}); training stopped, {where}; lower optim.lr or "
            "raise optim.warmup_steps, check the data with `vrcap validate`, then --resume auto"
        )


class CheckpointError(TrainingError):
    pass
