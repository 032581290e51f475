"""`vrcap record` mixing the sim headset with real cameras; `vrcap devices`; devices that cannot be opened."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from capture.sim import SimConfig, SimRig, decode_frame_number
from tests.capture.mjpeg_server import MjpegServer
from tests.helpers import run_vrcap
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader
from vrcap.validate import validate_session

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


def _video(path: Path, frames: int) -> Path:
    rig = SimRig(SimConfig())
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for k in range(frames):
        writer.write(rig.camera_frame("left", k))
    writer.release()
    return path


def test_sim_headset_with_a_file_camera_that_ends_early_and_a_network_camera(tmp_path: Path) -> None:
    video = _video(tmp_path / "short.avi", 30)  # 1 s of video in a 3 s recording
    with MjpegServer(fps=30) as server:
        result = run_vrcap(
            "record", "--session", "mix", "--root", str(tmp_path), "--duration", "3", "--audio", "none",
            "--camera", f"left={video}", "--camera", f"right={server.url}", "record.jpeg_quality=80",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    session = tmp_path / "mix"
    report = validate_session(session)
    assert report.ok, [f.message for f in report.errors]
    assert report.streams["camera_left"].samples == 30
    assert 80 <= report.streams["camera_right"].samples <= 92
    meta = load_meta(session)
    ended = [i for i in meta.incidents if i["kind"] == "stream-ended"]
    assert [i["stream"] for i in ended] == ["camera_left"]
    assert "camera_left" in meta.clocks and "camera_right" in meta.clocks
    numbers: dict[str, list[int]] = {"camera_left": [], "camera_right": []}
    with SessionReader(session) as reader:
        for packet in reader.packets():
            for name in numbers:
                for sample in packet["s"].get(name, []):
                    image = cv2.imdecode(np.frombuffer(sample["d"], np.uint8), cv2.IMREAD_COLOR)
                    numbers[name].append(decode_frame_number(image))  # type: ignore[arg-type]
                    # a frame goes into the frame produced after it was grabbed; the loop may run a little late
                    assert -0.15e9 < sample["t"] - packet["t"] < 0.15e9
    assert numbers["camera_left"] == list(range(30))
    right = numbers["camera_right"]
    assert right == sorted(right) and len(set(right)) == len(right)
    assert any(w.code == "incident" and "camera_left" in w.message for w in report.warnings)


def test_a_camera_that_cannot_be_opened_is_one_line_and_leaves_no_session(tmp_path: Path) -> None:
    result = run_vrcap(
        "record",
        "--session",
        "x",
        "--root",
        str(tmp_path),
        "--duration",
        "1",
        "--camera",
        "left=/nonexistent.mp4",
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "camera 'left'" in lines[0] and "vrcap devices" in lines[0]
    assert not (tmp_path / "x").exists()


def test_a_missing_microphone_is_one_line_and_leaves_no_session(tmp_path: Path) -> None:
    result = run_vrcap(
        "record", "--session", "x", "--root", str(tmp_path), "--duration", "1", "--audio", "NoSuchMic"
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NoSuchMic" in lines[0] and "vrcap devices" in lines[0]
    assert not (tmp_path / "x").exists()


def test_devices_json_has_the_three_keys() -> None:
    result = run_vrcap("devices", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert set(found) == {"audio", "cameras", "openxr"}
    assert isinstance(found["audio"], list) and isinstance(found["cameras"], list)
    xr = found[
        "openxr"
    ]  # a machine with an OpenXR runtime (Monado, SteamVR) reports it; one without says why
    if xr["available"]:
        assert xr["runtime"] and isinstance(xr["extensions"], list) and xr["extensions"]
    else:
        assert "--source sim" in xr["reason"]
    text = run_vrcap("devices")
    assert text.returncode == 0 and "OpenXR" in text.stdout and "Traceback" not in text.stderr
