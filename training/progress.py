"""The progress display: a rich bar with loss, samples/s and ETA on a terminal, one plain line per log otherwise.

Under the server (stderr is a log file) a redrawn bar would fill the log with control codes, so a line per
logged step is written instead; the numbers are the same as in metrics.jsonl.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class ProgressDisplay:
    def __init__(self, start: int, stop: int, enabled: bool = True) -> None:
        self.start, self.stop, self.enabled = start, stop, enabled
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> ProgressDisplay:
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.stop, completed=self.start, info="")
        return self

    def update(self, step: int, row: dict[str, float] | None) -> None:
        if not self.enabled:
            return
        info = None
        if row is not None:
            info = f"loss {row['loss/total']:.4f}  {row['perf/samples_per_s']:.1f} samples/s"
        if self._bar is not None:
            fields = {"info": info} if info is not None else {}
            self._bar.update(self._task, completed=step, **fields)
        elif info is not None:
            elapsed = time.perf_counter() - self._t0
            rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
            eta = (self.stop - step) / rate if rate > 0 else float("nan")
            print(f"step {step}/{self.stop}  {info}  ETA {eta:.0f} s", file=sys.stderr, flush=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
