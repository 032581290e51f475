"""Small builders shared by tests: synthetic sessions whose content is known exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.streams import StreamDescriptor
from vrcap.writer import SessionWriter, WriterConfig

REPO = Path(__file__).resolve().parent.parent
T0 = 1_000_000_000_000
PERIOD = 11_111_111  # 90 Hz

STREAMS = [
    StreamDescriptor("head", "pose", 90.0, (13,), "float32", "raw"),
    StreamDescriptor("audio", "audio", 48000.0, (-1, 1), "int16", "pcm_s16le"),
]


def synthetic_packet(seq: int, payload_bytes: int = 0) -> dict[str, Any]:
    """Packet ``seq`` of a synthetic session: head pose = seq + field index, 533 audio frames of seq."""
    head = (np.arange(13, dtype=np.float32) + seq).tobytes()
    audio = np.full(533, seq % 30000, dtype=np.int16).tobytes()
    packet: dict[str, Any] = {
        "seq": seq,
        "t": T0 + seq * PERIOD,
        "s": {
            "head": [{"t": T0 + seq * PERIOD, "d": head, "v": 0x3F}],
            "audio": [{"t": T0 + seq * PERIOD, "i": seq * 533, "n": 533, "d": audio}],
        },
    }
    if payload_bytes:
        packet["blob"] = os.urandom(payload_bytes)
    return packet


def write_synthetic(path: Path, n: int, config: WriterConfig | None = None, **kw: Any) -> Path:
    with SessionWriter.create(path, STREAMS, config=config or WriterConfig(fsync=False), **kw) as w:
        for seq in range(n):
            w.write_packet(synthetic_packet(seq))
    return path


def run_vrcap(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed command, in a subprocess: what a user types, exit code and all."""
    full_env = dict(os.environ, **(env or {}))
    script = Path(sys.executable).parent / "vrcap"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "vrcap.cli"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(REPO),
    )
