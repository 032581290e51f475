"""The export progress bar: seconds of recording exported, x real time and ETA, on stderr when it is a terminal."""

from __future__ import annotations

import sys
from typing import Any


def export_progress(label: str, enabled: bool | None = None) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class _Speed(TextColumn):
        def render(self, task: Any) -> Text:
            speed = task.speed
            return Text(f"{speed:.1f}x real time" if speed else "")

    show = sys.stderr.isatty() if enabled is None else enabled
    return Progress(
        TextColumn(f"[bold]{label}"), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s recorded"), _Speed(""), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not show, transient=True,
    )  # fmt: skip
