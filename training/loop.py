"""`vrcap train`: build everything, resume if asked, run optimizer steps, log, checkpoint, stop cleanly.

The loop itself is ``Trainer.fit`` → ``train_step`` (accumulate micro-batches, clip, step) → ``log`` and
``save`` at their intervals. Every stateful part (model, optimizer, schedule, data position, RNG) goes into a
checkpoint, so 10 steps + resume + 10 steps equal 20 steps straight.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.autograd.profiler import record_function

from training import distributed as D
from training.checkpoint import Checkpointer, load_checkpoint, rng_state, set_rng_state
from training.config import OUTPUTS, TrainConfig
from training.data import BackgroundBatches, TrainData, build_data, check_targets
from training.errors import CheckpointError, NonFiniteLoss
from training.losses import compute_losses
from training.metrics import MetricsLogger, Throughput, memory_metrics
from training.model import build_model, count_parameters
from training.progress import ProgressDisplay
from training.run_folder import guard_run_folder, write_resolved_config
from training.schedule import WarmupCosine, build_optimizer
from training.targets import TargetBuilder, change_scales
from training.validation import Validation
from vrcap.config import to_dict
from vrcap.errors import UsageError

CHECKPOINT_FORMAT = "vrcap-train-checkpoint"


@dataclass
class RunOptions:
    data_dir: Path
    out_dir: Path
    resume: str | None = None  # None, "auto", or a checkpoint path
    stop_step: int | None = None  # --max-steps: stop here; the schedule still spans cfg.max_steps
    one_run_per_folder: bool = True  # refuse an out_dir that holds another run (vrcap profile does not)


@dataclass
class TrainResult:
    step: int
    losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    resumed_from: Path | None = None
    stopped: str = ""  # the signal that stopped the run early, if one did


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_context(cfg: TrainConfig, device: torch.device) -> Any:
    """bf16 autocast on GPUs that have it (auto), or when asked; fp32 otherwise."""
    want = cfg.precision
    if want == "auto":
        want = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if want == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def split_global_batch(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """(micro-batch per process, accumulation) that keep the global batch data.batch_size x optim.grad_accum
    at any number of processes: accumulation is divided by the world size, or else the micro-batch is."""
    if grad_accum % world == 0:
        return batch_size, grad_accum // world
    total = batch_size * grad_accum
    if total % world == 0 and grad_accum < world:
        return total // world, 1
    raise UsageError(
        f"the global batch data.batch_size x optim.grad_accum = {batch_size} x {grad_accum} = {total} cannot be "
        f"shared by {world} processes; make it a multiple of {world} (e.g. optim.grad_accum={world})"
    )


class Trainer:
    def __init__(self, cfg: TrainConfig, opts: RunOptions, world: D.World) -> None:
        self.cfg, self.opts, self.world = cfg, opts, world
        self.micro, self.accum = split_global_batch(cfg.data.batch_size, cfg.optim.grad_accum, world.size)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed + world.rank)
        self.data: TrainData = build_data(opts.data_dir, cfg, world.size, world.rank, self.accum, self.micro)
        self.weights = cfg.loss_weights.as_dict()
        stats = change_scales(
            opts.data_dir, self.data.manifest, cfg.data.split, cfg.model.horizon, cfg.model.animation_base
        )
        check_targets(stats.pop("counts"), self.weights, cfg.data.split)
        norm = {k: v for k, v in self.data.manifest.get("normalization", {}).items() if isinstance(v, dict)}
        self.targets = TargetBuilder(cfg.model.horizon, norm, stats, cfg.model.animation_base)
        model = build_model(cfg.model, world.device)
        model.motion_stats.set_from(self.targets)  # resuming loads the same values from the checkpoint
        for name in OUTPUTS:  # text-only mode: a head with weight 0 is frozen, not merely unweighted
            if self.weights[name] == 0:
                model.heads[name].requires_grad_(False)
        self.params = count_parameters(model)
        self.optimizer = build_optimizer(model, cfg.optim, fused=world.device.type == "cuda")
        self.schedule = WarmupCosine(self.optimizer, cfg.optim, cfg.max_steps)
        self.model = D.wrap(model, world, cfg.strategy)
        self.forward_model = torch.compile(self.model) if cfg.compile else self.model
        self.autocast = autocast_context(cfg, world.device)
        self.checkpointer = Checkpointer(opts.out_dir / "checkpoints", cfg.keep_last)
        self.validation = Validation(
            cfg, opts.data_dir, self.model, self.targets, float(self.data.manifest.get("step_hz", 30))
        )
        if opts.one_run_per_folder:
            guard_run_folder(opts.out_dir, opts.resume, self.checkpointer)
        D.barrier(world)  # every rank has looked before rank 0 writes the first file
        self.metrics = MetricsLogger(opts.out_dir, enabled=world.is_main)
        if world.is_main:
            write_resolved_config(cfg, opts.out_dir)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.resumed_from: Path | None = None
        self._signal = ""  # set by SIGTERM/SIGINT: finish the step, checkpoint, stop
        self.stop_requested = False
        self.out_of_time = False  # max_minutes spent (every rank agrees, through the same reduction)
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        self._old_handlers: dict[int, Any] = {}
        self._resume()
        self.stop_step = min(opts.stop_step or cfg.max_steps, cfg.max_steps)
        self.batches: Any = (
            BackgroundBatches(self.data.loader, cfg.data.prefetch)
            if cfg.data.num_workers == 0 and cfg.data.prefetch > 0
            else iter(self.data.loader)
        )
        self.consumed = 0  # global batches taken since this run started

    # --- checkpoints -------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        resume = self.opts.resume
        if not resume:
            return
        if resume == "auto":
            found = self.checkpointer.load_latest()
            for note in found[2] if found else []:
                self._say(note)
            if found is None:
                self._say(f"no checkpoint in {self.checkpointer.directory}: starting at step 0")
                return
            state, path = found[0], found[1]
        else:
            path = Path(resume)
            state = load_checkpoint(path, verify=path.with_suffix(".json").is_file())
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a vrcap training checkpoint")
        if state["config"]["model"] != to_dict(self.cfg.model):
            raise UsageError(
                f"{path} holds a model with other settings than this config; resume with its config"
            )
        D.load_full_state(self.model, self.optimizer, state["model"], state["optimizer"], self.cfg.strategy)
        self.schedule.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        data = state["data"]
        if data.get("global_batch") == self.data.sampler.global_batch:
            self.data.sampler.start = int(data["global_batches"])
        else:
            self.data.sampler.start = self.step
            self._say(
                "the global batch changed since the checkpoint: the data order restarts at the same step"
            )
        rngs = state["rng"]
        if len(rngs) == self.world.size:
            set_rng_state(rngs[self.world.rank])
        else:
            self._say(
                f"checkpoint from {len(rngs)} processes, now {self.world.size}: RNG re-seeded, not restored"
            )
            seed_everything(self.cfg.seed + self.world.rank + self.step)
        if "targets" in state:  # the statistics the run started with, so resuming changes nothing
            self.targets = TargetBuilder.from_state(state["targets"])
            if self.validation.interval:
                self.validation.evaluator.builder = self.targets
        self.validation.load_state_dict(state.get("validation", {}))
        self.last_checkpoint = self.resumed_from = path
        self._say(f"resumed from {path} at step {self.step}")
        self.metrics.event(self.step, "resume", checkpoint=str(path))

    def save(self, final: bool = False, best: bool = False) -> None:
        """All ranks gather (FSDP state, RNG); rank 0 alone writes. ``best``: checkpoints/best.pt only."""
        model_state, optim_state = D.full_state(self.model, self.optimizer, self.cfg.strategy)
        rngs = D.gather_objects(rng_state(), self.world)
        if self.world.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "version": 1,
                "step": self.step,
                "model": model_state,
                "optimizer": optim_state,
                "scheduler": self.schedule.state_dict(),
                "rng": rngs,
                "data": self.data.sampler.position(self.consumed),
                "config": to_dict(self.cfg),
                "world_size": self.world.size,
                "dataset": {k: v for k, v in self.data.manifest.items() if k != "sessions"},
                "targets": self.targets.state(),
                "validation": self.validation.state_dict(),
            }
            if best:
                path = self.checkpointer.save_best(self.step, state)
                self.metrics.event(
                    self.step, "best", path=str(path), metric=self.cfg.best_metric, value=self.validation.best
                )
            else:
                self.last_checkpoint = self.checkpointer.save(self.step, state, final=final)
                self.metrics.event(self.step, "checkpoint", path=str(self.last_checkpoint))
        D.barrier(self.world)

    # --- steps -------------------------------------------------------------------------------------------------

    def train_step(self, meter: Throughput) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimizer step over ``accum`` micro-batches: (mean losses, total-norm of the gradient)."""
        sums = {name: torch.zeros((), device=self.world.device) for name in (*OUTPUTS, "total")}
        for micro in range(self.accum):
            waited = time.perf_counter()
            with record_function("data"):
                batch = next(self.batches)
            meter.data_wait += time.perf_counter() - waited
            batch = to_device(batch, self.world.device)
            meter.samples += batch["step_mask"].shape[0] * self.world.size
            meter.tokens += int(batch["step_mask"].sum()) * self.world.size
            last = micro == self.accum - 1
            sync = (
                contextlib.nullcontext()
                if last or not hasattr(self.model, "no_sync")
                else self.model.no_sync()
            )
            with sync:
                with self.autocast(), record_function("forward"):
                    out = self.forward_model(batch)
                    total, losses = compute_losses(out, self.targets.build(batch), self.weights)
                with record_function("backward"):
                    (total / self.accum).backward()
            for name, value in losses.items():
                sums[name] += value.detach() / self.accum
            sums["total"] += total.detach() / self.accum
        self.consumed += 1
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip) if params else torch.zeros(())
        return sums, grad_norm

    def one_step(self, meter: Throughput) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        sums, grad_norm = self.train_step(meter)
        self._check_finite(sums, grad_norm)
        with record_function("optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        self.step += 1
        return sums, grad_norm

    def _check_finite(self, sums: dict[str, torch.Tensor], grad_norm: torch.Tensor) -> None:
        """A CPU-GPU sync each step; cheap next to a step, and a NaN must not reach the weights. The same
        reduction tells every rank whether any of them was asked to stop, so they all stop at the same step."""
        limit, cpu_limit = self.cfg.max_minutes * 60, self.cfg.max_cpu_minutes * 60
        spent = (limit > 0 and time.monotonic() - self.started >= limit) or (
            cpu_limit > 0 and time.process_time() - self.cpu_started >= cpu_limit
        )
        flags = torch.stack(
            [
                (~torch.isfinite(sums["total"])).float() + (~torch.isfinite(grad_norm.float())).float(),
                torch.tensor(float(bool(self._signal)), device=grad_norm.device),
                torch.tensor(float(spent), device=grad_norm.device),
            ]
        )
        if self.world.distributed:
            torch.distributed.all_reduce(flags)
        bad, stop, out_of_time = flags.tolist()
        self.stop_requested = stop > 0
        self.out_of_time = out_of_time > 0
        if bad > 0:
            losses = {f"loss/{k}": float(v) for k, v in sums.items()} | {"grad_norm": float(grad_norm)}
            self.metrics.event(self.step + 1, "non_finite", **{k: str(v) for k, v in losses.items()})
            raise NonFiniteLoss(self.step + 1, losses, self.last_checkpoint)

    def log(
        self, sums: dict[str, torch.Tensor], grad_norm: torch.Tensor, meter: Throughput
    ) -> dict[str, float]:
        """Losses are means over the steps since the last log (and over ranks); grad_norm is the last step's."""
        values = torch.stack([sums[n] for n in (*OUTPUTS, "total")])
        values = D.all_reduce_mean(values, self.world).tolist()
        row = {f"loss/{n}": v for n, v in zip((*OUTPUTS, "total"), values, strict=True)}
        row |= {"lr": self.schedule.lr_at(self.step - 1), "grad_norm": float(grad_norm)}
        row |= meter.report() | memory_metrics(self.world.device)
        row["perf/cpu_s"] = time.process_time() - self.cpu_started  # this process's CPU time since the start
        self.metrics.log(self.step, row)
        return row

    def fit(self) -> TrainResult:
        cfg = self.cfg
        self._say(
            f"training {self.params:,} parameters on {self.world.device} x{self.world.size}: "
            f"{self.data.windows} windows, {self.data.sampler.steps_per_epoch} steps per epoch, "
            f"global batch {self.data.sampler.global_batch}, steps {self.step} -> {self.stop_step}"
        )
        self.metrics.event(self.step, "start", params=self.params, stop_step=self.stop_step)
        meter = Throughput()
        self.started = time.monotonic()  # max_minutes counts from the first step of this process
        self.cpu_started = time.process_time()  # max_cpu_minutes too
        row: dict[str, float] = {}
        interval: dict[str, torch.Tensor] = {}  # loss sums since the last log: the log shows their mean
        self.model.train()
        self._catch_signals()
        with ProgressDisplay(self.step, self.stop_step, enabled=self.world.is_main) as progress:
            while self.step < self.stop_step:
                sums, grad_norm = self.one_step(meter)
                interval = {k: interval.get(k, 0) + v for k, v in sums.items()} | {
                    "n": interval.get("n", 0) + 1
                }
                if self.step % cfg.log_interval == 0 or self.step == self.stop_step:
                    n = interval.pop("n")
                    row = self.log({k: v / n for k, v in interval.items()}, grad_norm, meter)
                    interval = {}
                    progress.update(self.step, row)
                else:
                    progress.update(self.step, None)
                if self.stop_requested:
                    break
                last = self.step == self.stop_step or self.out_of_time
                if self.validation.due(self.step, last) and self.validate():
                    break
                if self.out_of_time:
                    self._say(f"time budget spent at step {self.step}: stopping")
                    self.metrics.event(
                        self.step,
                        "time_limit",
                        max_minutes=cfg.max_minutes,
                        max_cpu_minutes=cfg.max_cpu_minutes,
                    )
                    break
                if self.step % cfg.save_interval == 0 and self.step != self.stop_step:
                    self.save()
        losses = {k.removeprefix("loss/"): v for k, v in row.items() if k.startswith("loss/")}
        if self.stop_requested:  # a checkpoint of where it stopped, not marked final: --resume auto goes on
            self.save()
            self._say(
                f"stopped by {self._signal or 'another rank'} at step {self.step}: {self.last_checkpoint}"
            )
            self.metrics.event(
                self.step, "stopped", signal=self._signal, checkpoint=str(self.last_checkpoint)
            )
            return TrainResult(
                self.step, losses, self.last_checkpoint, self.resumed_from, self._signal or "signal"
            )
        self.save(final=True)
        self.metrics.event(self.step, "done", checkpoint=str(self.last_checkpoint))
        return TrainResult(self.step, losses, self.last_checkpoint, self.resumed_from)

    def validate(self) -> bool:
        """One validation pass: log it (val/...), keep best.pt; True when early stopping ends the run."""
        with record_function("validation"):
            metrics = self.validation.run()
        self.metrics.log(self.step, {f"val/{k}": v for k, v in metrics.items()})
        if self.validation.improved(metrics, self.step):
            self.save(best=True)
        if self.validation.should_stop():
            self._say(
                f"early stop at step {self.step}: val {self.cfg.best_metric} has not improved for "
                f"{self.validation.bad_passes} passes (best {self.validation.best:.4g} at step {self.validation.best_step})"
            )
            self.metrics.event(self.step, "early_stop", best_step=self.validation.best_step)
            return True
        return False

    def _catch_signals(self) -> None:
        """SIGTERM (the server stopping a job) and Ctrl-C end the run after the current step, with a checkpoint."""
        if threading.current_thread() is not threading.main_thread():
            return

        def request(signum: int, _frame: Any) -> None:
            if self._signal:  # a second signal: stop now
                raise KeyboardInterrupt
            self._signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, request)

    def _say(self, text: str) -> None:
        if self.world.is_main:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}
        if isinstance(self.batches, BackgroundBatches):
            self.batches.close()
        self.metrics.close()


def train(cfg: TrainConfig, opts: RunOptions) -> TrainResult:
    """Entry point for one process of a run (torchrun starts one per rank)."""
    if not opts.data_dir.exists():
        raise UsageError(
            f"--data {opts.data_dir} does not exist; make it with `vrcap replay SESSIONS --to-tensors DIR`"
        )
    world = D.setup(cfg.device)
    try:
        trainer = Trainer(cfg, opts, world)
        try:
            return trainer.fit()
        finally:
            trainer.close()
    finally:
        D.teardown()
