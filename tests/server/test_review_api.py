"""The review endpoints on a real `vrcap serve`: the overview's figures and bounds, thumbnails by time, refusals.

The overview is checked against what was written (a synthetic session whose head moves 1 m a frame, with known
dropped frames and a known pause) and against the recorded sim session read back with SessionReader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from server.review_scan import overview
from tests.helpers import PERIOD, STREAMS, run_vrcap, synthetic_packet, wait_for
from tests.server.live import ServeProcess, record
from vrcap.reader import SessionReader
from vrcap.writer import SessionWriter, WriterConfig

SESSION = "sim-review"
DROPPED = range(100, 105)  # seqs never written: 5 dropped frames
PAUSE_AFTER, PAUSE_NS = 300, 500_000_000  # from seq 300 on, every time is 0.5 s later: a gap, no drop


def synthetic(path: Path) -> Path:
    with SessionWriter.create(path, STREAMS, config=WriterConfig(fsync=False)) as writer:
        for seq in range(600):
            if seq in DROPPED:
                continue
            packet = synthetic_packet(seq)
            if seq >= PAUSE_AFTER:
                packet["t"] += PAUSE_NS
                for samples in packet["s"].values():
                    for sample in samples:
                        sample["t"] += PAUSE_NS
            writer.write_packet(packet)
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("review-api")
    done = run_vrcap(
        "record", "--session", SESSION, "--source", "sim", "--duration", "4", "--offline",
        "--root", str(root / "sessions"), "sim.camera_width=320", "sim.camera_height=240", "writer.fsync=false",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    synthetic(root / "sessions" / "synthetic")
    with ServeProcess(root) as server:
        yield server


def test_overview_marks_drops_and_pauses_and_measures_speed(tmp_path: Path) -> None:
    view = overview(str(synthetic(tmp_path / "s")), 100)
    assert view["frames"] == 595
    assert view["drops"] == [{"t": pytest.approx((99 - 0) * PERIOD / 1e9, abs=1e-3), "frames": 5}]
    assert len(view["gaps"]) == 2  # the dropped frames leave a 6-frame hole; the pause a 0.5 s one
    assert view["gaps"][1]["length_s"] == pytest.approx(0.5 + PERIOD / 1e9, abs=1e-3)
    assert view["duration_s"] == pytest.approx((599 * PERIOD + PAUSE_NS) / 1e9, abs=1e-6)
    (head,) = view["tracks"]
    assert len(head["t"]) <= 100
    # (x, y, z) = seq + (0, 1, 2): √3 m a frame at 90 frames a second
    speeds = np.array([s for s in head["speed"] if s is not None])
    assert np.median(speeds) == pytest.approx(np.sqrt(3) * 1e9 / PERIOD, rel=1e-3)
    audio = view["audio"]
    assert len(audio["t"]) <= 100 and audio["peak"] == pytest.approx(599 / 32768, abs=1e-4)


@pytest.mark.parametrize(("field", "value"), [("v", "yes"), ("t", 2**63 + 5), ("t", 1.5)])
def test_a_sample_with_a_field_of_the_wrong_type_is_refused_as_bad_data_not_a_crash(
    served: ServeProcess, field: str, value: object
) -> None:
    """What a crafted or damaged session can hold (the CRC covers what was written, not that it makes sense)."""
    name = f"odd-{field}-{type(value).__name__}"
    path = served.root / "sessions" / name
    with SessionWriter.create(path, STREAMS, config=WriterConfig(fsync=False)) as writer:
        for seq in range(20):
            packet = synthetic_packet(seq)
            if seq == 10:
                packet["s"]["head"][0][field] = value
            writer.write_packet(packet)
    with served.client() as client:
        got = client.get(f"/api/v1/sessions/{name}/overview")
    assert (got.status_code, got.json()["error"]) == (409, "bad-session-data"), got.text


def test_imported_annotations_are_on_the_timeline(tmp_path: Path) -> None:
    session = synthetic(tmp_path / "s")
    cues = tmp_path / "cues.srt"
    cues.write_text("1\n00:00:01,500 --> 00:00:02,000\npick up the cup\n")
    done = run_vrcap("annotate", str(session), "--import", str(cues))
    assert done.returncode == 0, done.stderr
    (note,) = overview(str(session), 100)["annotations"]
    assert note["text"] == "pick up the cup" and note["stream"] == "imported"
    assert note["t"] == pytest.approx(1.5, abs=1e-3)


def test_overview_of_a_recorded_session_is_bounded_and_matches_the_data(served: ServeProcess) -> None:
    with served.client() as client:
        small = client.get(f"/api/v1/sessions/{SESSION}/overview", params={"points": 50})
        big = client.get(f"/api/v1/sessions/{SESSION}/overview", params={"points": 2000})
        refused = client.get(f"/api/v1/sessions/{SESSION}/overview", params={"points": 2001})
    assert small.status_code == 200 and big.status_code == 200, small.text
    assert refused.status_code == 422
    view = small.json()
    assert len(small.content) < 40_000  # 4 s or 4 h: 50 buckets per curve
    names = {t["name"] for t in view["tracks"]}
    assert {"head", "controller_left", "controller_right"} <= names
    assert all(len(t["t"]) <= 50 for t in view["tracks"]) and len(view["audio"]["t"]) <= 50
    assert {c["name"] for c in view["cameras"]} == {"camera_left", "camera_right"}
    assert view["annotations"] and all(
        n["kind"] in ("instruction", "transcript", "marker") for n in view["annotations"]
    )
    with SessionReader(served.root / "sessions" / SESSION) as reader:
        heads = [np.frombuffer(s["d"], "<f4")[:3] for p in reader.packets() for s in p["s"].get("head", [])]
    truth = np.array(heads)
    head = next(t for t in big.json()["tracks"] if t["name"] == "head")
    for axis, key in enumerate("xyz"):  # bucket means stay inside what was recorded, and span most of it
        values = np.array(head[key])
        lo, hi = truth[:, axis].min(), truth[:, axis].max()
        assert lo - 1e-3 <= values.min() and values.max() <= hi + 1e-3
        assert values.max() - values.min() >= 0.9 * (hi - lo)


def test_a_thumbnail_by_time_is_a_small_jpeg_of_that_moment(served: ServeProcess) -> None:
    with served.client() as client:
        got = client.get(
            f"/api/v1/sessions/{SESSION}/frame", params={"camera": "camera_left", "t": 2.5, "width": 160}
        )
        late = client.get(f"/api/v1/sessions/{SESSION}/frame", params={"camera": "camera_right", "t": 999})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)
    t = float(got.headers["x-frame-time"])
    assert 2.5 - 0.1 <= t <= 2.5  # the last image taken at or before the moment
    # The same moment decoded in full from the session and shrunk: the thumbnail shows that image.
    with SessionReader(served.root / "sessions" / SESSION) as reader:
        t0 = reader.index.times[0]
        stored = [
            (abs(s["t"] - t0 - t * 1e9), s["d"])
            for p in reader.packets()
            for s in p["s"].get("camera_left", [])
        ]
    full = cv2.imdecode(np.frombuffer(min(stored, key=lambda x: x[0])[1], np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.resize(full, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 12
    assert (
        late.status_code == 200 and float(late.headers["x-frame-time"]) > 3.5
    )  # past the end: the last image


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (f"/api/v1/sessions/{SESSION}/frame", {"camera": "camera_top"}, 404, "no-frame"),
        ("/api/v1/sessions/synthetic/frame", {"camera": "camera_left"}, 404, "no-frame"),
        (f"/api/v1/sessions/{SESSION}/frame", {"camera": "../x"}, 422, "invalid-request"),
        (
            f"/api/v1/sessions/{SESSION}/frame",
            {"camera": "camera_left", "width": 5000},
            422,
            "invalid-request",
        ),
        ("/api/v1/sessions/nothing-here/overview", {}, 404, "no-such-session"),
        ("/api/v1/sessions/..%2F..%2Fetc/overview", {}, 404, "not-found"),
        ("/api/v1/sessions/.hidden/frame", {"camera": "camera_left"}, 422, "bad-session-name"),
    ],
)
def test_bad_requests_are_refused_with_the_fix(
    served: ServeProcess, path: str, params: dict[str, object], status: int, code: str
) -> None:
    with served.client() as client:
        response = client.get(path, params=params)
    assert (response.status_code, response.json().get("error")) == (status, code), response.text
    assert response.json()["fix"]


@pytest.mark.parametrize("t", ["nan", "inf", "-inf"])
def test_a_time_that_is_not_a_number_is_named_as_such(served: ServeProcess, t: str) -> None:
    """?t=nan was refused, but as "less than or equal to 86400": the words should say what is wrong."""
    with served.client() as client:
        response = client.get(f"/api/v1/sessions/{SESSION}/frame", params={"camera": "camera_left", "t": t})
    assert response.status_code == 422 and response.json()["error"] == "invalid-request"
    assert "finite number" in response.text and "86400" not in response.text, response.text


def test_linked_sessions_are_not_reviewed(served: ServeProcess, tmp_path: Path) -> None:
    outside = synthetic(tmp_path / "outside")
    (served.root / "sessions" / "linked").symlink_to(outside, target_is_directory=True)
    try:
        with served.client() as client:
            response = client.get("/api/v1/sessions/linked/overview")
        assert (response.status_code, response.json()["error"]) == (404, "no-such-session")
    finally:
        (served.root / "sessions" / "linked").unlink()


def test_a_session_being_recorded_is_not_reviewed(served: ServeProcess) -> None:
    with served.client() as client:
        status = record(client, "live-now")
        try:
            wait_for(
                lambda: (served.root / "sessions" / "live-now" / "session.json").exists(), 15, "the session"
            )
            for tail in ("overview", "frame?camera=camera_left"):
                response = client.get(f"/api/v1/sessions/live-now/{tail}")
                assert (response.status_code, response.json()["error"]) == (409, "session-recording"), tail
        finally:
            assert client.post(f"/api/v1/recordings/{status['id']}/stop").status_code == 200
        assert client.get("/api/v1/sessions/live-now/overview").status_code == 200  # once stopped, it is
