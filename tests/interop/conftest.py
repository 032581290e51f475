"""Sessions for the interop tests, with content known exactly, and an independent reading of them.

The session is the simulator's (poses, hands, controls, audio, two JPEG cameras) written offline, plus what
the simulator does not make: instruction annotations (LeRobot's tasks) and a 4-channel ``signal`` stream as
`vrcap record --lsl` stores an EEG amplifier's. ``session_samples`` reads it with SessionReader alone, so the
tests compare each exporter's output against the session, not against the exporter's own reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from capture.engine import annotation_stream
from capture.sim import SimConfig
from capture.sim_source import SimPacketGenerator
from vrcap.reader import SessionReader
from vrcap.streams import StreamDescriptor
from vrcap.writer import SessionWriter, WriterConfig

T0 = 5_000_000_000_000  # host monotonic ns at sim time 0
WALL0 = 1_790_000_000_123_456_789  # the wall clock at T0
EEG = StreamDescriptor(
    "eeg", "signal", 250.0, (4,), "float32", "raw", "microvolts", "", ("Fz", "Cz", "Pz", "Oz"), "lsl",
    "lsl_ns",
)  # fmt: skip
INSTRUCTIONS = ((0.2, "pick up the cup"), (1.3, "put it down"))


def write_interop_session(
    path: Path, seconds: float, instructions: Iterable[tuple[float, str]] = INSTRUCTIONS, **sim: Any
) -> Path:
    # tasks off: the only text is the instructions below, so each exporter's mapping of them can be checked
    config = SimConfig(**{"camera_width": 320, "camera_height": 240, "tasks": False, **sim})
    gen = SimPacketGenerator(config, jpeg_quality=90, t0_ns=T0)
    pending = sorted(instructions)
    streams = [*gen.streams, EEG]
    if all(s.name != "annotations" for s in streams):  # the sim declares it since it speaks
        streams.append(annotation_stream())
    eeg_next = 0
    config_w = WriterConfig(fsync=False)
    with SessionWriter.create(path, streams, config=config_w, start_mono_ns=T0, start_wall_ns=WALL0) as w:
        for seq in range(round(seconds * config.headset_rate_hz)):
            packet = gen.packet(seq)
            st = packet["st"]
            while eeg_next * 4_000_000 <= st:  # 250 Hz, values a known function of the sample number
                t = T0 + eeg_next * 4_000_000 + 137  # not on the nominal grid: never de-jittered
                values = np.arange(4, dtype=np.float32) * 10 + eeg_next
                packet["s"].setdefault("eeg", []).append({"t": t, "st": t - 999, "d": values.tobytes()})
                eeg_next += 1
            while pending and pending[0][0] * 1e9 <= st:
                at, text = pending.pop(0)
                item = {"t": T0 + round(at * 1e9), "st": 0, "d": {"text": text, "kind": "instruction",
                        "channel": "external"}}  # fmt: skip
                packet["s"].setdefault("annotations", []).append(item)
            w.write_packet(packet)
    return path


def session_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every sample of every stream, in file order, read with SessionReader only."""
    out: dict[str, list[dict[str, Any]]] = {}
    with SessionReader(path) as reader:
        for packet in reader.packets():
            for name, samples in packet["s"].items():
                out.setdefault(name, []).extend(samples)
    return out


def wall(t: int) -> int:
    return WALL0 + (t - T0)


@pytest.fixture(scope="session")
def interop_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s: 180 frames, 60 images per camera, 498 EEG samples (4 ms apart up to 1.989 s), 2 instructions."""
    return write_interop_session(tmp_path_factory.mktemp("interop") / "cups", 2.0)
