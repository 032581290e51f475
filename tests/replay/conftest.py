"""Sessions for the replay tests: one real recording through `vrcap record` (shared by every test module: it
takes real time) and sessions written packet by packet from the simulator, with chosen packets left out."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from capture.sim import SimConfig
from capture.sim_source import SimPacketGenerator, sim_clock
from tests.helpers import run_vrcap
from vrcap.writer import SessionWriter, WriterConfig

T0 = 1_000_000_000_000  # host monotonic ns of sim time 0 in written sessions
RECORD_SECONDS = 3.0
RECORD_SIM = ("sim.camera_width=320", "sim.camera_height=240")


def write_sim_session(
    path: Path,
    seconds: float,
    *,
    skip: Iterable[int] = (),
    drop_streams: Iterable[str] = (),
    annotations: Iterable[tuple[int, str, str]] = (),
    **sim: object,
) -> Path:
    """A sim session written offline: packets ``skip`` are left out (dropped frames), streams in ``drop_streams``
    are declared but never written (an incident says why, as a failing device would), ``annotations`` are
    (sim time ns, text, channel) placed in the first packet at or after their time."""
    config = SimConfig(**sim)  # type: ignore[arg-type]
    gen = SimPacketGenerator(config, jpeg_quality=90, t0_ns=T0)
    skip, drop = set(skip), set(drop_streams)
    pending = sorted(annotations)
    rate = config.audio_rate_hz
    clocks = {
        "headset": sim_clock(T0),
        "audio": {
            "type": "linear",
            "unit": "sample_index",
            "segments": [{"from_index": 0, "a_ns": float(T0), "b_ns": 1e9 / rate}],
        },
    }
    clocks.update({f"camera_{c}": sim_clock(T0) for c in config.cameras})
    streams = list(gen.streams)
    if pending:
        from capture.engine import annotation_stream

        streams.append(annotation_stream())
    with SessionWriter.create(
        path, streams, config=WriterConfig(fsync=False), clocks=clocks, start_mono_ns=T0
    ) as w:
        for seq in range(round(seconds * config.headset_rate_hz)):
            packet = gen.packet(seq)
            if seq in skip:
                continue
            for name in drop:
                packet["s"].pop(name, None)
            while pending and pending[0][0] <= packet["st"]:
                st, text, channel = pending.pop(0)
                item = {
                    "t": T0 + st,
                    "st": T0 + st,
                    "d": {"text": text, "kind": "marker", "channel": channel},
                }
                packet["s"].setdefault("annotations", []).append(item)
            w.write_packet(packet)
        for name in sorted(drop):
            w.add_incident(name, "device-error", "left out by the test", T0)
    return path


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `vrcap record --source sim` session (3 s, two 320x240 cameras, sim audio)."""
    root = tmp_path_factory.mktemp("recorded")
    done = run_vrcap(
        "record", "--session", "rec", "--root", str(root), "--source", "sim", "--duration", str(RECORD_SECONDS),
        "writer.fsync=false", *RECORD_SIM,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "rec"


@pytest.fixture(scope="session")
def pulse_server() -> str:
    """The PulseAudio test server of tests/capture (fails in CI when PulseAudio is missing, skips elsewhere)."""
    from tests.capture import pulse

    return pulse.pulse_server()
