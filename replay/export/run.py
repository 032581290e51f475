"""`vrcap export` as one function: sessions in, one output per session (MCAP, XDF) or one dataset (LeRobot).

A session that cannot be exported (not a session, a corrupt record, a newer format) is reported in one line
and leaves nothing behind; the others are still exported. Where outputs go:

- ``--format mcap|xdf`` with one session and ``--out`` ending in ``.mcap``/``.xdf``: that file;
  otherwise ``--out`` is a folder and each session becomes ``OUT/<name>.mcap`` (or ``.xdf``);
- ``--format lerobot``: ``--out`` is the dataset folder, one episode (or one per task) per session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.export.config import ExportConfig
from replay.export.errors import ExportRefused, OutputFailed, SessionNotExported
from replay.export.output import refuse_existing, staged
from replay.export.progress import export_progress
from replay.export.source import SessionSource
from vrcap.errors import UsageError, VrcapError

SUFFIX = {"mcap": ".mcap", "xdf": ".xdf"}


@dataclass
class ExportResult:
    outputs: list[Path] = field(default_factory=list)
    failures: list[SessionNotExported] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # per session: counts the exporter reports


def _file_exporter(fmt: str, config: ExportConfig) -> Callable[[SessionSource, Path, Any], dict[str, Any]]:
    if fmt == "mcap":
        from replay.export.mcap_export import export_mcap

        return lambda source, target, progress: export_mcap(source, target, progress, config.mcap)
    from replay.export.xdf_export import export_xdf

    return lambda source, target, progress: export_xdf(source, target, config.xdf, progress)


def file_targets(sessions: list[Path], fmt: str, out: Path) -> list[Path]:
    suffix = SUFFIX[fmt]
    if len(sessions) == 1 and out.suffix == suffix:
        return [out]
    if out.suffix == suffix:
        raise UsageError(f"--out {out} names one file but {len(sessions)} sessions were given; give a folder")
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise UsageError("two sessions share a folder name; export them to different --out folders")
    return [out / f"{name}{suffix}" for name in names]


def export_sessions(
    paths: list[Path], fmt: str, out: Path, config: ExportConfig, *, progress: bool | None = None,
) -> ExportResult:  # fmt: skip
    """Export every session that can be; the others are in ``failures``, each with its one-line reason."""
    from vrcap.sessions import expand_session_paths

    sessions = expand_session_paths([str(p) for p in paths])
    result = ExportResult()
    with export_progress(f"export {fmt}", progress) as bar:
        if fmt == "lerobot":
            from replay.export.lerobot_export import export_lerobot

            refuse_existing(out)
            try:
                with staged(out, directory=True) as temp:
                    details = export_lerobot(sessions, temp, config.lerobot, bar, result.failures)
                    if not details["episodes"]:  # nothing to show for it: leave no empty dataset behind
                        raise ExportRefused(result.failures, 0)
            except ExportRefused:
                return result
            except OSError as exc:
                raise OutputFailed(out, exc) from exc
            result.outputs.append(out)
            result.details = details
        else:
            targets = file_targets(sessions, fmt, out)
            for target in targets:
                refuse_existing(target)
            exporter = _file_exporter(fmt, config)
            for session, target in zip(sessions, targets, strict=True):
                try:
                    with SessionSource(session) as source, staged(target) as temp:
                        task = bar.add_task(session.name, total=max(source.duration_s(), 1e-9))
                        result.details[session.name] = exporter(
                            source, temp, lambda s, task=task: bar.advance(task, s)
                        )
                    result.outputs.append(target)
                except VrcapError as exc:
                    result.failures.append(SessionNotExported(session, str(exc)))
                except OSError as exc:  # the output side: a full disk fails every later session too
                    raise OutputFailed(target, exc) from exc
    return result
