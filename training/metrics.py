"""Metrics: TensorBoard event files under OUT/runs and the same numbers in OUT/metrics.jsonl.

The server tails metrics.jsonl while `vrcap train` runs as its child process, so every line is one complete
JSON object, written and flushed at once (a reader never sees half a line for long, and never a stale file).
Names: loss/<output>, loss/total, lr, grad_norm, perf/samples_per_s, perf/tokens_per_s, perf/data_wait_frac,
mem/rss_mb, mem/cuda_allocated_mb (GPU only). A token is one time step of one window.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch


def rss_mb() -> float:
    """Resident memory now (from /proc), or the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_metrics(device: torch.device) -> dict[str, float]:
    out = {"mem/rss_mb": rss_mb()}
    if device.type == "cuda":
        out["mem/cuda_allocated_mb"] = torch.cuda.memory_allocated(device) / 2**20
        out["mem/cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


class MetricsLogger:
    """Writes on rank 0 only; other ranks get a logger whose methods do nothing."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tb: Any = None
        self._jsonl: Any = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            out_dir.mkdir(parents=True, exist_ok=True)
            # TensorBoard's writer thread flushes every 10 s on its own; flushing it on every log line made
            # each training step several times slower on a 2-core machine (its I/O thread competes with torch's).
            self._tb = SummaryWriter(log_dir=str(out_dir / "runs"), flush_secs=10)
            self._jsonl = (out_dir / "metrics.jsonl").open("a", encoding="utf-8")

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        clean = {k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}  # JSON has no NaN
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._jsonl.flush()

    def event(self, step: int, kind: str, **info: Any) -> None:
        """A non-metric line (start, checkpoint, resume, stop) for whoever tails the file."""
        if self.enabled:
            self._jsonl.write(json.dumps({"step": step, "time": time.time(), "event": kind, **info}) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


class Throughput:
    """Samples/s, tokens/s and the fraction of wall time spent waiting for data, since the last report."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.samples = 0
        self.tokens = 0
        self.data_wait = 0.0

    def report(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {
            "perf/samples_per_s": self.samples / elapsed,
            "perf/tokens_per_s": self.tokens / elapsed,
            "perf/data_wait_frac": self.data_wait / elapsed,
        }
        self.reset()
        return out
