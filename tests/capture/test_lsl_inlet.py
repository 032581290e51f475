"""`vrcap record --lsl`: a pylsl outlet in this process, vrcap recording it in another, on loopback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.capture.lsl import lsl_env
from tests.helpers import REPO
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

pytestmark = pytest.mark.slow


def _start_record(root: Path, *args: str) -> subprocess.Popen[str]:
    vrcap = Path(sys.executable).parent / "vrcap"
    return subprocess.Popen(
        [str(vrcap), "record", "--session", "lsl", "--root", str(root), "--audio", "none", "writer.fsync=false",
         "sim.cameras=[]", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
    )  # fmt: skip


def _wait_consumer(outlet: object, proc: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not outlet.wait_for_consumers(0.2):  # type: ignore[attr-defined]
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"vrcap never connected: {proc.communicate()[1]}")


def _wait_recording(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    """Until the first packet is on disk: then every push source has started."""
    segment = path / "packets-000000.vrc"
    deadline = time.monotonic() + seconds
    while not (segment.is_file() and segment.stat().st_size > 16):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the recording never started: {proc.communicate()[1]}")
        time.sleep(0.05)


def _recorded(path: Path, stream: str) -> list[dict]:
    with SessionReader(path) as reader:
        return [s for p in reader.packets() for s in p["s"].get(stream, [])]


def _make_outlet(lsl: object, name: str, source_id: str) -> object:
    info = lsl.StreamInfo(name, "EEG", 3, 100, lsl.cf_float32, source_id)  # type: ignore[attr-defined]
    channels = info.desc().append_child("channels")
    for label in ("C3", "Cz", "C4"):
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    return lsl.StreamOutlet(info)  # type: ignore[attr-defined]


def test_every_pushed_sample_is_recorded_at_its_time_and_a_vanished_stream_is_a_gap(tmp_path: Path) -> None:
    lsl = lsl_env()
    source_id = f"amp-{time.monotonic_ns()}"
    outlet = _make_outlet(lsl, "TestAmp", source_id)
    markers = lsl.StreamOutlet(
        lsl.StreamInfo("TestMarkers", "Markers", 1, 0, lsl.cf_string, f"m-{source_id}")
    )
    proc = _start_record(tmp_path, "--duration", "120", "--lsl", "TestAmp", "--lsl", "type='Markers'")
    _wait_consumer(outlet, proc)
    _wait_consumer(markers, proc)
    _wait_recording(tmp_path / "lsl", proc)  # open() connects before the session exists; wait for start
    pushed: list[tuple[float, list[float]]] = []
    for k in range(60):  # irregular on purpose: 60 samples, 5-15 ms apart, never what 100 Hz says
        ts = lsl.local_clock()
        values = [float(k), k + 0.5, -float(k)]
        outlet.push_sample(values, ts)
        pushed.append((ts, values))
        if k % 20 == 0:
            markers.push_sample([f"stimulus {k}"], ts)
        time.sleep(0.005 + 0.01 * (k % 2))
    time.sleep(0.3)
    del outlet  # the sender quits mid-recording...
    time.sleep(1.0)
    outlet = _make_outlet(lsl, "TestAmp", source_id)  # ...and comes back
    _wait_consumer(outlet, proc)
    for k in range(60, 80):
        ts = lsl.local_clock()
        outlet.push_sample([float(k), k + 0.5, -float(k)], ts)
        pushed.append((ts, [float(k), k + 0.5, -float(k)]))
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    path = tmp_path / "lsl"
    got = _recorded(path, "lsl_testamp")
    assert len(got) == len(pushed) == 80
    for sample, (ts, values) in zip(got, pushed, strict=True):
        assert sample["st"] == round(ts * 1e9)  # the sender's own stamp, kept as it was
        assert abs(sample["t"] - ts * 1e9) < 1e6  # mapped to host monotonic within 1 ms
        assert np.frombuffer(sample["d"], np.float32).tolist() == values
    texts = _recorded(path, "lsl_testmarkers")
    assert [m["d"] for m in texts] == [{"text": f"stimulus {k}", "kind": "marker", "channel": "external"}
                                       for k in (0, 20, 40)]  # fmt: skip
    assert [m["st"] for m in texts] == [round(pushed[k][0] * 1e9) for k in (0, 20, 40)]
    meta = load_meta(path)
    assert meta.stream("lsl_testmarkers").kind == "text"  # type: ignore[union-attr]
    desc = meta.stream("lsl_testamp")
    assert desc is not None and desc.kind == "signal" and desc.fields == ("C3", "Cz", "C4")
    assert desc.rate_hz == 100 and desc.units == "microvolts" and desc.extra["source_id"] == source_id
    kinds = [i["kind"] for i in meta.incidents if i["stream"] == "lsl_testamp"]
    assert kinds == ["stream-lost", "stream-resumed"]
    clock = meta.clocks["lsl_testamp"]
    assert clock["type"] == "offset_segments" and clock["segments"] and clock["measurements"] >= 2  # repeated
    assert all(abs(s["offset_ns"]) < 1_000_000 for s in clock["segments"])  # one host: offsets below 1 ms
    for sample in got:  # the stored mapping reproduces every sample's time
        segment = [s for s in clock["segments"] if s["from_st_ns"] <= sample["st"]][-1]
        assert sample["t"] == sample["st"] + segment["offset_ns"]


def test_a_stream_that_is_not_there_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    lsl_env()
    proc = _start_record(tmp_path, "--duration", "1", "--lsl", "NoSuchStream", "--lsl", "type='Nope'")
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.startswith("vrcap")]
    assert proc.returncode == 1 and len(lines) == 1 and "no LSL stream matches 'NoSuchStream'" in lines[0], (
        err
    )
    assert not (tmp_path / "lsl").exists()  # no empty session left behind
