"""`vrcap record --lsl-out`: vrcap's outlets read by pylsl inlets on loopback, every sample, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from capture.config import CaptureConfig
from capture.session import make_engine
from tests.capture.lsl import lsl_env
from vrcap.config import build
from vrcap.reader import SessionReader

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

pytestmark = pytest.mark.slow
PUBLISHED = ["head", "controller_left", "controller_right", "controls_left", "controls_right", "hand_left",
             "hand_right", "audio", "annotations"]  # fmt: skip


def _config() -> CaptureConfig:
    return build(CaptureConfig, {
        "record": {"duration_s": 2.0, "lsl_out": True, "lsl_out_wait_s": 30.0},
        "writer": {"fsync": False},
        "sim": {"cameras": [], "camera_width": 320, "camera_height": 240, "tasks": False},
    })  # fmt: skip


def _labels(info: object) -> list[tuple[str, str, str]]:
    out = []
    channel = info.desc().child("channels").child("channel")  # type: ignore[attr-defined]
    while not channel.empty():
        out.append(tuple(channel.child_value(k) for k in ("label", "type", "unit")))
        channel = channel.next_sibling("channel")
    return out


def test_inlets_receive_every_sample_in_order_with_its_time(tmp_path: Path) -> None:
    lsl = lsl_env()
    session = f"out{time.monotonic_ns()}"
    engine = make_engine(tmp_path / session, _config())
    result: dict[str, object] = {}

    def record() -> None:
        try:
            result["done"] = asyncio.run(engine.run())
        except BaseException as exc:  # surfaced by the assertion below
            result["error"] = exc

    recorder = threading.Thread(target=record)
    recorder.start()
    found: list = []
    deadline = time.monotonic() + 30
    while len(found) < len(PUBLISHED) and time.monotonic() < deadline:
        found = lsl.resolve_bypred(f"starts-with(source_id,'vrcap:{session}:')", len(PUBLISHED), 2.0)
    assert sorted(i.name() for i in found) == sorted(f"vrcap-{n}" for n in PUBLISHED)
    inlets = {i.name()[len("vrcap-") :]: lsl.StreamInlet(i, max_buflen=60, recover=False) for i in found}
    for inlet in inlets.values():
        inlet.open_stream(10)
    labels = {name: _labels(inlet.info(10)) for name, inlet in inlets.items()}  # the full info, with desc
    while engine.stats.state in ("starting",):
        time.sleep(0.01)
    engine.annotate("look left", kind="instruction")
    got: dict[str, tuple[list, list]] = {name: ([], []) for name in inlets}
    lost_error = lsl.util.LostError

    def pull(name: str) -> None:
        while True:
            try:
                values, stamps = inlets[name].pull_chunk(timeout=0.05)
            except lost_error:  # the recording ended and destroyed its outlets
                return
            got[name][0].extend(values)
            got[name][1].extend(stamps)

    pullers = [threading.Thread(target=pull, args=(name,)) for name in inlets]
    for puller in pullers:
        puller.start()
    for puller in pullers:
        puller.join(60)
    recorder.join(30)
    assert "error" not in result, result
    with SessionReader(tmp_path / session) as reader:
        truth: dict[str, list[dict]] = {}
        for packet in reader.packets():
            for name, samples in packet["s"].items():
                truth.setdefault(name, []).extend(samples)
    for name in PUBLISHED:
        values, stamps = got[name]
        samples = truth.get(name, [])
        if name == "audio":
            expect_t = np.concatenate([s["t"] + np.round(np.arange(s["n"]) * 1e9 / 48000) for s in samples])
            expect_v = np.concatenate([np.frombuffer(s["d"], np.int16) for s in samples])
            assert np.array_equal(np.asarray(values, np.int16).reshape(-1), expect_v)
        elif name == "annotations":
            expect_t = np.array([s["t"] for s in samples])
            assert values == [["look left", "instruction", "external"]]
        else:
            expect_t = np.array([s["t"] for s in samples])
            expect_v = np.stack([np.frombuffer(s["d"], np.float32).reshape(-1) for s in samples])
            assert np.array_equal(np.asarray(values, np.float32), expect_v), name
        assert len(stamps) == expect_t.size > 0, name
        assert np.max(np.abs(np.asarray(stamps) - expect_t / 1e9)) < 1e-6, name  # stamps sent, not re-made
    info = next(i for i in found if i.name() == "vrcap-head")
    assert (info.type(), info.channel_count(), info.nominal_srate()) == ("MoCap", 13, 90.0)
    assert info.source_id() == f"vrcap:{session}:head"
    assert labels["head"][:4] == [("px", "PositionX", "meters"), ("py", "PositionY", "meters"),
                                  ("pz", "PositionZ", "meters"), ("qx", "OrientationX", "normalized")]  # fmt: skip
    assert len(labels["hand_left"]) == 208
    assert labels["annotations"] == [
        ("text", "Marker", ""),
        ("kind", "Marker", ""),
        ("channel", "Marker", ""),
    ]
    assert labels["audio"] == [("ch0", "Audio", "int16 full scale 32767")]
