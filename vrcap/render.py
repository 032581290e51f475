"""How validation reports and session facts look in a terminal (rich), kept apart from what they say."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from vrcap.validate import ValidationReport
from vrcap.wording import plural


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def print_report(console: Console, report: ValidationReport, repairs: list[str] | None = None) -> None:
    mark = "[green]✓ valid[/]" if report.ok else "[red]✗ invalid[/]"
    console.print(
        f"{mark}  [bold]{report.path}[/]  {report.packets} frames, {report.duration_s:.2f} s, "
        f"{report.dropped_frames} dropped, {human_bytes(report.size_bytes)}, status {report.status or '?'}"
    )
    for action in repairs or []:
        console.print(f"  [cyan]fixed[/]   {action}")
    if report.interval_ms:
        iv, jit = report.interval_ms, report.jitter_ms
        console.print(
            f"  frame interval p50 {iv['p50']:.2f} ms, p99 {iv['p99']:.2f} ms; jitter p50 {jit['p50']:.3f} ms, "
            f"p99 {jit['p99']:.3f} ms"
        )
    for f in report.findings:
        style = "red" if f.level == "error" else "yellow"
        hint = "  (--fix repairs this)" if f.fixable and f.level == "error" and repairs is None else ""
        console.print(f"  [{style}]{f.level:7}[/] {f.message}{hint}", highlight=False)


def summary_table(rows: list[ValidationReport]) -> Table:
    table = Table(title=None, show_lines=False)
    for col in ("session", "duration", "frames", "dropped", "size", "status"):
        table.add_column(col, justify="left" if col in ("session", "status") else "right")
    for r in rows:
        status = "[green]valid[/]" if r.ok else f"[red]invalid ({plural(len(r.errors), 'error')})[/]"
        table.add_row(
            r.name or r.path,
            f"{r.duration_s:.1f} s",
            str(r.packets),
            str(r.dropped_frames),
            human_bytes(r.size_bytes),
            status,
        )
    return table


def info_table(info: dict[str, Any]) -> Table:
    table = Table(
        title=f"{info['name']} — {info['duration_s']:.2f} s, {info['frames']} frames, {human_bytes(info['size_bytes'])}, format {info['format_version']}, {info['status']}"
    )
    for col in ("stream", "kind", "rate", "shape", "dtype", "encoding", "samples"):
        table.add_column(col, justify="right" if col in ("rate", "samples") else "left")
    for s in info["streams"]:
        rate = f"{s['rate_hz']:g} Hz" if s["rate_hz"] else "-"
        shape = "×".join("n" if d < 0 else str(d) for d in s["shape"]) or "-"
        table.add_row(
            s["name"], s["kind"], rate, shape, s["dtype"] or "-", s["encoding"], str(s.get("samples", 0))
        )
    return table
