"""LeRobot v3.0 export checked without LeRobot (its install needs another torch): pyarrow reads the tables with
the column types v3.0 documents, PyAV decodes every video frame and compares it with the recorded JPEG held
at that step, and info.json's features and counts match what is on disk.

Image fidelity: PSNR of every decoded frame in RGB against the recorded JPEG, >= 35 dB, and of the luma plane
against the JPEG converted to the same yuv420p, >= 38 dB. yuv420p's half-resolution chroma alone caps these
sharp sim images at ~38 dB RGB before any encoding; yuv444p (libx264) is checked too (docs/INTEROP.md)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import run_vrcap
from tests.interop.conftest import T0, session_samples, write_interop_session
from tests.interop.require import require

pa = require("pyarrow")
pq = require("pyarrow.parquet")
av = require("av")

FPS = 15.0


def _export(sessions: list[Path], out: Path, *settings: str) -> None:
    args = [a for s in (f"lerobot.fps={FPS}", *settings) for a in ("--set", s)]
    done = run_vrcap("export", *map(str, sessions), "--format", "lerobot", "--out", str(out), *args)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def dataset(interop_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lerobot") / "ds"
    _export([interop_session], out)
    return out


def _step_times(samples: dict[str, list[dict]]) -> np.ndarray:
    first = min(s["t"] for s in samples["head"])
    last = max(s["t"] for s in samples["head"])
    count = int((last - first) * FPS // 1e9) + 1
    return first + np.round(np.arange(count) * 1e9 / FPS).astype(np.int64)


def _held(samples: list[dict], t: int) -> dict | None:
    before = [s for s in samples if s["t"] <= t]
    return before[-1] if before else None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_parquet_columns_have_the_v3_types_and_the_held_state(dataset: Path, interop_session: Path) -> None:
    truth = session_samples(interop_session)
    steps = _step_times(truth)
    table = pq.read_table(dataset / "data/chunk-000/file-000.parquet")
    assert table.num_rows == steps.size == 30
    schema = {f.name: f.type for f in table.schema}
    assert schema["observation.state"] == pa.list_(pa.float32(), 471) == schema["action"]
    assert schema["timestamp"] == pa.float32()
    assert all(schema[c] == pa.int64() for c in ("frame_index", "episode_index", "index", "task_index"))
    state = np.array(table["observation.state"].to_pylist(), np.float32)
    for k in (0, 7, 29):
        head = np.frombuffer(_held(truth["head"], int(steps[k]))["d"], np.float32)
        hand = np.frombuffer(_held(truth["hand_right"], int(steps[k]))["d"], np.float32)
        controls = np.frombuffer(_held(truth["controls_right"], int(steps[k]))["d"], np.float32)
        assert np.array_equal(state[k, :13], head)  # head first, then controllers, hands, controls
        assert np.array_equal(state[k, 39 + 208 : 39 + 416], hand)
        assert np.array_equal(state[k, -8:], controls)
    action = np.array(table["action"].to_pylist(), np.float32)
    assert np.array_equal(action[:-1], state[1:]) and np.array_equal(action[-1], state[-1])
    assert table["timestamp"].to_pylist() == pytest.approx([k / FPS for k in range(30)], abs=1e-6)
    assert table["index"].to_pylist() == list(range(30)) == table["frame_index"].to_pylist()


def test_tasks_come_from_instructions(dataset: Path, interop_session: Path) -> None:
    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert tasks.schema.pandas_metadata["index_columns"] == ["task"]
    names = dict(zip(tasks["task_index"].to_pylist(), tasks["task"].to_pylist(), strict=True))
    assert names == {0: "no instruction", 1: "pick up the cup", 2: "put it down"}
    steps = _step_times(session_samples(interop_session))
    task_index = pq.read_table(dataset / "data/chunk-000/file-000.parquet")["task_index"].to_pylist()
    expect = [0 if t < T0 + 0.2e9 else 1 if t < T0 + 1.3e9 else 2 for t in steps]
    assert task_index == expect


def _worst_psnr(dataset: Path, truth: dict[str, list[dict]], codecs: tuple[str, ...], pix_fmt: str) -> dict:
    """camera → (worst luma PSNR, worst RGB PSNR) over every decoded frame, against the JPEG held at the step."""
    steps = _step_times(truth)
    worst = {}
    for camera in ("left", "right"):
        path = dataset / f"videos/observation.images.{camera}/chunk-000/file-000.mp4"
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name in codecs and stream.codec_context.pix_fmt == pix_fmt
            frames = list(container.decode(stream))
        assert len(frames) == steps.size
        worst_y = worst_rgb = float("inf")
        for k, frame in enumerate(frames):
            assert frame.time == pytest.approx(k / FPS, abs=1e-4)
            jpeg = _held(truth[f"camera_{camera}"], int(steps[k]))["d"]
            expect = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            expect_y = (
                av.VideoFrame.from_ndarray(expect, format="rgb24").reformat(format=pix_fmt).to_ndarray()
            )
            worst_y = min(worst_y, _psnr(frame.to_ndarray()[:240], expect_y[:240]))  # the Y plane: 240 rows
            worst_rgb = min(worst_rgb, _psnr(frame.to_ndarray(format="rgb24"), expect))
        worst[camera] = (worst_y, worst_rgb)
    return worst


def test_every_video_frame_decodes_close_to_the_recorded_jpeg(dataset: Path, interop_session: Path) -> None:
    worst = _worst_psnr(dataset, session_samples(interop_session), ("libdav1d", "av1"), "yuv420p")
    for camera, (worst_y, worst_rgb) in worst.items():
        assert worst_y >= 38.0, f"{camera}: worst luma PSNR {worst_y:.1f} dB"
        assert worst_rgb >= 35.0, f"{camera}: worst RGB PSNR {worst_rgb:.1f} dB"


@pytest.mark.parametrize(("pix_fmt", "rgb_db"), [("yuv420p", 35.0), ("yuv444p", 37.0)])
def test_h264_frames_are_close_to_the_jpeg_in_420_and_444(
    interop_session: Path, tmp_path: Path, pix_fmt: str, rgb_db: float
) -> None:
    out = tmp_path / "ds"
    _export([interop_session], out, "lerobot.codec=h264", f"lerobot.pix_fmt={pix_fmt}")
    assert json.loads((out / "meta/info.json").read_text())["features"]["observation.images.left"]["info"][
        "video.pix_fmt"] == pix_fmt  # fmt: skip
    worst = _worst_psnr(out, session_samples(interop_session), ("h264",), pix_fmt)
    for camera, (_, worst_rgb) in worst.items():
        assert worst_rgb >= rgb_db, f"{camera} {pix_fmt}: worst RGB PSNR {worst_rgb:.1f} dB"


def test_info_episodes_and_stats_match_the_files(dataset: Path, interop_session: Path) -> None:
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (1, 30, 3)
    features = info["features"]
    assert features["observation.images.left"]["shape"] == [240, 320, 3]
    assert features["observation.images.left"]["info"]["video.codec"] == "av1"
    assert len(features["observation.state"]["names"]) == 471
    assert features["observation.state"]["names"][:2] == ["head.px", "head.py"]
    episodes = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["episode_index"], e["length"], e["dataset_from_index"], e["dataset_to_index"]) for e in episodes] == [
        (0, 30, 0, 30)]  # fmt: skip
    assert episodes[0]["tasks"] == ["no instruction", "pick up the cup", "put it down"]
    assert episodes[0]["videos/observation.images.left/to_timestamp"] == pytest.approx(30 / FPS)
    stats = json.loads((dataset / "meta/stats.json").read_text())
    state = np.array(
        pq.read_table(dataset / "data/chunk-000/file-000.parquet")["observation.state"].to_pylist()
    )
    assert np.allclose(stats["observation.state"]["mean"], state.mean(axis=0), atol=1e-5)
    assert np.allclose(stats["observation.state"]["std"], state.std(axis=0), atol=1e-4)
    assert stats["observation.state"]["count"] == [30]
    images = stats["observation.images.left"]
    assert np.array(images["mean"]).shape == (3, 1, 1) and images["count"] == [30]
    truth = session_samples(interop_session)
    rgb = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(_held(truth["camera_left"], int(t))["d"], np.uint8),
                                              cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for t in _step_times(truth)]) / 255.0  # fmt: skip
    assert np.allclose(np.ravel(images["mean"]), rgb.mean(axis=(0, 1, 2)), atol=0.01)  # a 1-in-8 pixel grid
    assert np.allclose(np.ravel(images["std"]), rgb.std(axis=(0, 1, 2)), atol=0.01)
    assert 0 <= np.min(images["min"]) <= np.max(images["max"]) <= 1


def test_task_episodes_h264_and_two_sessions(interop_session: Path, tmp_path: Path) -> None:
    other = write_interop_session(tmp_path / "second", 1.0, instructions=[(0.5, "wave")])
    out = tmp_path / "ds"
    _export([interop_session, other], out, "lerobot.episodes=task", "lerobot.codec=h264")
    episodes = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(e["tasks"], e["length"], e["data/file_index"]) for e in episodes] == [
        (["no instruction"], 3, 0), (["pick up the cup"], 17, 0), (["put it down"], 10, 0),
        (["no instruction"], 8, 1), (["wave"], 7, 1)]  # fmt: skip
    assert [e["dataset_from_index"] for e in episodes] == [0, 3, 20, 30, 38]
    assert episodes[2]["videos/observation.images.left/from_timestamp"] == pytest.approx(20 / FPS)
    table = pq.read_table(out / "data/chunk-000/file-001.parquet")
    assert table["frame_index"].to_pylist() == list(range(8)) + list(range(7))
    assert table["episode_index"].to_pylist() == [3] * 8 + [4] * 7
    with av.open(str(out / "videos/observation.images.right/chunk-000/file-001.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 15


def test_a_bad_session_is_left_out_whole(interop_session: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    write_interop_session(bad, 1.0)
    segment = bad / "packets-000000.vrc"
    data = bytearray(segment.read_bytes())
    data[len(data) * 2 // 3] ^= 0xFF
    segment.write_bytes(bytes(data))
    out = tmp_path / "ds"
    done = run_vrcap("export", str(bad), str(interop_session), "--format", "lerobot", "--out", str(out))
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if "error" in line] == [
        line for line in done.stderr.splitlines() if "bad was not exported" in line] != []  # fmt: skip
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] == 60  # only the good session, at 30 fps
    assert sorted(p.name for p in (out / "data/chunk-000").iterdir()) == ["file-000.parquet"]
    assert sorted(p.name for p in (out / "videos/observation.images.left/chunk-000").iterdir()) == [
        "file-000.mp4"
    ]


def test_export_is_deterministic(dataset: Path, interop_session: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _export([interop_session], again)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file()) and len(files) == 7
    assert all((dataset / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_mjpeg_copies_the_recorded_jpegs_byte_for_byte(interop_session: Path, tmp_path: Path) -> None:
    """`lerobot.codec=mjpeg`: each step's packet is the JPEG held at that step as recorded (no re-encoding),
    PyAV decodes every frame at its time, info.json names the codec and the JPEG's sampling, and the sampled
    image statistics are close to those of every frame."""
    out = tmp_path / "ds"
    _export([interop_session], out, "lerobot.codec=mjpeg")
    truth = session_samples(interop_session)
    steps = _step_times(truth)
    info = json.loads((out / "meta/info.json").read_text())["features"]["observation.images.left"]["info"]
    assert (info["video.codec"], info["video.pix_fmt"]) == ("mjpeg", "yuvj420p")
    for camera in ("left", "right"):
        held = [_held(truth[f"camera_{camera}"], int(t))["d"] for t in steps]
        with av.open(str(out / f"videos/observation.images.{camera}/chunk-000/file-000.mp4")) as container:
            stream = container.streams.video[0]
            packets = [bytes(p) for p in container.demux(stream) if p.size]
        assert packets == held  # the recording's own bytes, one per step
        with av.open(str(out / f"videos/observation.images.{camera}/chunk-000/file-000.mp4")) as container:
            frames = list(container.decode(video=0))
        assert [round(f.time * FPS) for f in frames] == list(range(steps.size))
        for frame, jpeg in zip(frames[::7], held[::7], strict=True):
            expect = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            assert (
                _psnr(frame.to_ndarray(format="rgb24"), expect) >= 35.0
            )  # FFmpeg's decoder against OpenCV's
    images = json.loads((out / "meta/stats.json").read_text())["observation.images.left"]
    rgb = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(_held(truth["camera_left"], int(t))["d"], np.uint8),
                                              cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for t in steps]) / 255.0  # fmt: skip
    assert np.allclose(
        np.ravel(images["mean"]), rgb.mean(axis=(0, 1, 2)), atol=0.02
    )  # 1 frame in 4, 1/8 scale
    assert np.allclose(np.ravel(images["std"]), rgb.std(axis=(0, 1, 2)), atol=0.02)


def test_jpeg_frame_header_gives_size_and_sampling() -> None:
    from replay.export.lerobot_jpeg import jpeg_frame

    image = np.random.default_rng(1).integers(0, 255, (48, 80, 3), np.uint8)
    for factor, fmt in ((cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, "yuvj420p"),
                        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, "yuvj422p"),
                        (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "yuvj444p")):  # fmt: skip
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])[1].tobytes()
        assert jpeg_frame(jpeg) == (48, 80, fmt)
        assert jpeg_frame(jpeg[:20]) is None  # cut before the frame header
    assert jpeg_frame(b"not a jpeg") is None and jpeg_frame(b"") is None
