"""The packets of the golden sessions in tests/data: the test rebuilds them and compares bytes on disk."""

from __future__ import annotations

from typing import Any

import numpy as np

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
