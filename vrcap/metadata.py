"""session.json: what a session holds, how its clocks map, and how it ended (docs/FORMAT.md, "session.json")."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vrcap.errors import FormatError, NotASession, UnsupportedVersion
from vrcap.fsutil import atomic_write_bytes
from vrcap.records import FORMAT_MAJOR, FORMAT_VERSION
from vrcap.streams import StreamDescriptor

SESSION_FILE = "session.json"
VERSION_RE = re.compile(r"^([0-9]+)\.([0-9]+)$")  # "MAJOR.MINOR", docs/FORMAT.md §5
FORMAT_NAME = "vrcap-session"

STATUS_RECORDING = "recording"  # written at start; still there after a crash
STATUS_COMPLETE = "complete"  # the writer closed normally
STATUS_REPAIRED = "repaired"  # `vrcap validate --fix` finalized it

_KNOWN = (
    "format",
    "version",
    "name",
    "status",
    "created_by",
    "start",
    "stop",
    "streams",
    "clocks",
    "config",
    "segments",
    "stats",
    "incidents",
    "repairs",
)


def utc_iso(wall_ns: int) -> str:
    return datetime.fromtimestamp(wall_ns / 1e9, tz=timezone.utc).isoformat(timespec="microseconds")


def host_facts() -> dict[str, str]:
    from vrcap import __version__

    return {
        "vrcap": __version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "pid": str(os.getpid()),
    }


@dataclass
class SessionMeta:
    """The parsed session.json. Keys this version does not know are kept in ``extra`` and written back."""

    name: str
    streams: list[StreamDescriptor]
    start: dict[str, Any]
    status: str = STATUS_RECORDING
    version: str = FORMAT_VERSION
    created_by: dict[str, str] = field(default_factory=dict)
    stop: dict[str, Any] | None = None
    clocks: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    repairs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def new_start(mono_ns: int | None = None, wall_ns: int | None = None) -> dict[str, Any]:
        """The start instant on both clocks, taken back to back so wall time can be mapped from monotonic."""
        wall = time.time_ns() if wall_ns is None else wall_ns
        mono = time.monotonic_ns() if mono_ns is None else mono_ns
        return {"wall_utc": utc_iso(wall), "wall_ns": wall, "mono_ns": mono}

    def stream(self, name: str) -> StreamDescriptor | None:
        return next((s for s in self.streams if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            format=FORMAT_NAME,
            version=self.version,
            name=self.name,
            status=self.status,
            created_by=self.created_by,
            start=self.start,
            stop=self.stop,
            streams=[s.to_dict() for s in self.streams],
            clocks=self.clocks,
            config=self.config,
            segments=self.segments,
            stats=self.stats,
            incidents=self.incidents,
            repairs=self.repairs,
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> SessionMeta:
        if data.get("format") != FORMAT_NAME:
            raise NotASession(path.parent, f"{path.name} has format {data.get('format')!r}")
        version = data.get("version")
        match = VERSION_RE.match(version) if isinstance(version, str) else None
        if match is None:
            raise FormatError(f'{path}: version {version!r} is not MAJOR.MINOR (e.g. "1.0")')
        major = int(match.group(1))
        if major < 1:
            raise FormatError(f"{path}: version {version!r}: major versions start at 1")
        if major > FORMAT_MAJOR:
            raise UnsupportedVersion(path, version, str(FORMAT_MAJOR))
        raw_streams = data.get("streams", [])
        if not isinstance(raw_streams, list):
            raise FormatError(f"{path}: 'streams' is a JSON {type(raw_streams).__name__}, not an array")
        try:
            streams = [StreamDescriptor.from_dict(s) for s in raw_streams]
            return cls(
                name=str(data["name"]),
                streams=streams,
                start=dict(data["start"]),
                status=str(data.get("status", STATUS_RECORDING)),
                version=version,
                created_by=dict(data.get("created_by") or {}),
                stop=data.get("stop"),
                clocks=dict(data.get("clocks") or {}),
                config=dict(data.get("config") or {}),
                segments=list(data.get("segments") or []),
                stats=dict(data.get("stats") or {}),
                incidents=list(data.get("incidents") or []),
                repairs=list(data.get("repairs") or []),
                extra={k: v for k, v in data.items() if k not in _KNOWN},
            )
        except FormatError as exc:
            raise FormatError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(
                f"{path} is malformed: {exc!r}; `vrcap validate {path.parent}` says more"
            ) from exc


def load_meta(session_dir: Path) -> SessionMeta:
    path = session_dir / SESSION_FILE
    if not session_dir.exists():
        raise NotASession(session_dir, "no such folder")
    if not session_dir.is_dir():
        raise NotASession(session_dir, "not a folder")
    if not path.is_file():
        lost = sum(1 for p in session_dir.glob("packets-*.vrc"))
        hint = (
            f"; `vrcap validate --fix {session_dir}` rebuilds it from the {lost} segment files"
            if lost
            else ""
        )
        raise NotASession(session_dir, f"no {SESSION_FILE}{hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path} cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return SessionMeta.from_dict(data, path)


def save_meta(session_dir: Path, meta: SessionMeta) -> None:
    text = json.dumps(meta.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(session_dir / SESSION_FILE, text.encode("utf-8"))
