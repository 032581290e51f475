"""The packets of the golden sessions in tests/data: the test rebuilds them and compares bytes on disk."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.reader import SessionReader

GOLDEN_T0 = 5_000_000_000_000


def golden_packets() -> list[dict[str, Any]]:
    """Six frames: small (raw) packets, a compressible (LZ4) one, a dropped frame, an annotation."""
    packets = []
    for k, seq in enumerate([0, 1, 2, 3, 5, 6]):
        t = GOLDEN_T0 + seq * 11_111_111
        head = np.array([0.1 * seq, 1.6, -0.2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype="<f4")
        packet: dict[str, Any] = {
            "seq": seq,
            "t": t,
            "st": seq * 11_111_111,
            "s": {"head": [{"t": t, "st": seq * 11_111_111, "d": head.tobytes(), "v": 0x3F}]},
        }
        if k == 2:
            audio = np.zeros(480, dtype="<i2")  # silence: LZ4 shrinks it, so this record is flagged LZ4
            packet["s"]["audio"] = [{"t": t, "st": 0, "i": 0, "n": 480, "d": audio.tobytes()}]
        if k == 4:
            packet["s"]["annotations"] = [
                {"t": t + 5, "d": {"text": "pick up the cup", "kind": "instruction", "channel": "external"}}
            ]
        packets.append(packet)
    return packets


def disagreements(path: Path) -> list[str]:
    """Where a golden's session.json disagrees with itself or with its segments (issue 13, §1.12).

    Checked outside vrcap's validator on purpose, so a test can compare the two.
    """
    meta = json.loads((path / "session.json").read_text())
    with SessionReader(path) as reader:
        packets = list(reader.packets())
    found = []
    for key in ("start", "stop"):
        instant = meta[key]
        utc_ns = datetime.fromisoformat(instant["wall_utc"]).timestamp() * 1e9
        if abs(utc_ns - instant["wall_ns"]) > 1e6:
            found.append(f"{key}.wall_utc {round((utc_ns - instant['wall_ns']) / 1e9)} s from {key}.wall_ns")
    stats = meta["stats"]
    for key, value in (
        ("last_seq", packets[-1]["seq"]),
        ("last_t", packets[-1]["t"]),
        ("packets", len(packets)),
    ):
        if stats[key] != value:
            found.append(f"stats.{key} {stats[key]}, segments {value}")
    size = sum(p.stat().st_size for p in path.glob("packets-*.vrc"))
    if stats["bytes"] != size:
        found.append(f"stats.bytes {stats['bytes']}, files {size}")
    model = meta["clocks"]["audio"]["segments"][0]
    for p in packets:
        for block in p["s"].get("audio", []):
            expected = model["a_ns"] + model["b_ns"] * (block["i"] - model["from_index"])
            if abs(block["t"] - expected) > 1e6:
                found.append(f"audio t {round((block['t'] - expected) / 1e6)} ms from its clock model")
    return found
