"""A real sim recording, converted: every aligned value against the simulator's ground truth, with numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from capture.sim import SimConfig, SimRig, decode_frame_number
from replay.config import load_replay_config
from replay.convert import convert_sessions
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

SIM = SimConfig(camera_width=320, camera_height=240)


@pytest.fixture(scope="module", params=[30.0, 23.0], ids=["30Hz", "23Hz"])
def shard(
    recorded: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, np.ndarray]:
    """At 30 Hz every step falls on a 90 Hz sample; at 23 Hz almost none do, so interpolation is exercised."""
    out = tmp_path_factory.mktemp("acc")
    config = load_replay_config(overrides=[f"step.rate_hz={request.param}"])
    convert_sessions([recorded], out, config, progress=False, log=lambda m: None)
    tensors = load_file(str(out / "shards" / "rec.safetensors"))
    tensors["rate"] = np.array(request.param)
    return tensors


def _sim_times(recorded: Path, time_ns: np.ndarray) -> np.ndarray:
    """Sim time (s) of each step: sim time 0 is the headset clock's zero (as tests/capture/test_record.py)."""
    t0 = load_meta(recorded).clocks["headset"]["mono_ns_at_zero"]
    return (time_ns - t0) / 1e9


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle between two unit quaternions, from the relative rotation's vector part (atan2 stays
    accurate near 0, where arccos of a dot product loses float32 resolution)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = a[3] * b[3] + a[:3] @ b[:3]
    v = a[3] * b[:3] - b[3] * a[:3] - np.cross(a[:3], b[:3])
    return float(np.degrees(2 * np.arctan2(np.linalg.norm(v), abs(w))))


def test_poses_and_hands_match_the_ground_truth(recorded: Path, shard: dict[str, np.ndarray]) -> None:
    rig = SimRig(SIM)
    times = _sim_times(recorded, shard["time_ns"])
    steps = times.size
    assert steps >= 0.95 * 3.0 * float(shard["rate"]) and shard["pose"].shape == (steps, 3, 7)
    assert shard["pose.mask"].mean() > 0.97  # a dropped frame on a busy machine may mask a step or two
    worst_mm, worst_deg, worst_hand_mm, checked = 0.0, 0.0, 0.0, 0
    for k, t in enumerate(times):
        truths = [rig.head_pose(t), rig.controller_pose("left", t), rig.controller_pose("right", t)]
        for j, truth in enumerate(truths):
            if not shard["pose.mask"][k, j]:
                continue
            got = shard["pose"][k, j]
            worst_mm = max(worst_mm, 1000 * float(np.linalg.norm(got[:3] - truth[:3])))
            worst_deg = max(worst_deg, _angle_deg(got[3:7], truth[3:7]))
            checked += 1
        if shard["hands.mask"][k, 1]:
            hand = rig.hand_joints("right", t)
            worst_hand_mm = max(
                worst_hand_mm,
                1000 * float(np.max(np.linalg.norm(shard["hands"][k, 1, :, :3] - hand[:, :3], axis=1))),
            )
    print(
        f"pose: worst {worst_mm:.3f} mm, {worst_deg:.4f} deg over {checked}; hands worst {worst_hand_mm:.3f} mm"
    )
    assert checked >= 0.95 * steps * 3
    assert worst_mm < 1.0 and worst_deg < 0.1 and worst_hand_mm < 1.0


def test_controls_are_held_from_the_last_sample(recorded: Path, shard: dict[str, np.ndarray]) -> None:
    """Buttons from the last sample at or before each step: equal to the truth at that sample's time."""
    rig = SimRig(SIM)
    with SessionReader(recorded) as reader:
        sample_t = np.array(
            [p["s"]["controls_left"][0]["t"] for p in reader.packets() if "controls_left" in p["s"]]
        )
    t0 = load_meta(recorded).clocks["headset"]["mono_ns_at_zero"]
    mismatches = 0
    for k, t in enumerate(shard["time_ns"]):
        if not shard["controls.mask"][k, 0]:
            continue
        last = sample_t[np.searchsorted(sample_t, t, side="right") - 1]
        truth = rig.controls("left", (last - t0) / 1e9).astype(np.float32)
        mismatches += int(not np.array_equal(shard["controls"][k, 0], truth))
    assert shard["controls.mask"][:, 0].mean() > 0.97 and mismatches == 0


def test_tones_land_at_their_step_and_sample(recorded: Path, shard: dict[str, np.ndarray]) -> None:
    rig = SimRig(SIM)
    meta = load_meta(recorded)
    t0 = meta.clocks["audio"]["segments"][0]["a_ns"]
    start, pcm, mel = shard["audio.start_index"], shard["audio.pcm"][..., 0], shard["audio.mel"]
    hop = 480
    events = [e for e in rig.audio_events(2.9) if e.kind == "tone"]
    assert len(events) == 3  # at 0.5, 1.5, 2.5 s
    for event in events:
        index = round(event.start_s * 48000)  # sim sample i is at sim time i / 48000
        rate = float(shard["rate"])
        expected_step = int(np.searchsorted(shard["time_ns"], t0 + event.start_s * 1e9, side="right") - 1)
        length = pcm.shape[1]
        assert length == round(48000 / rate)
        k = int(np.flatnonzero((start <= index) & (index < start + length))[0])
        offset = index - start[k]
        assert k == expected_step and shard["audio.mask"][k]
        assert pcm[k, offset] != 0 and (offset == 0 or not pcm[k, :offset].any())  # the very sample
        # log-mel: the first frame whose 25 ms reach the onset (frames end at start + (j + 1) * hop)
        loud = np.flatnonzero(mel[k].max(axis=1) > mel[k - 1].max() + 5.0)
        expected_frame = offset // hop
        print(
            f"tone at {event.start_s} s: step {k}, sample {offset}, mel frame {loud[:1]} (expected {expected_frame})"
        )
        assert loud.size and abs(int(loud[0]) - expected_frame) <= 1


def test_camera_frames_are_the_nearest_within_half_a_step(
    recorded: Path, shard: dict[str, np.ndarray]
) -> None:
    with SessionReader(recorded) as reader:
        frames = [(s["t"], s["f"]) for p in reader.packets() for s in p["s"].get("camera_left", [])]
    t = np.array([f[0] for f in frames])
    numbers = np.array([f[1] for f in frames])
    expected = []
    for step_t in shard["time_ns"]:
        d = np.abs(t - step_t)
        best = int(np.argmin(d))
        expected.append(int(numbers[best]) if d[best] <= 1e9 / float(shard["rate"]) / 2 else -1)
    assert shard["camera.left.frame"].tolist() == expected
    assert (shard["camera.left.frame"] >= 0).mean() > 0.95  # 30 fps frames: within half a step at 30 or 23 Hz
    assert shard["camera.left"].shape[1:] == (3, 64, 64) and shard["camera.left"].dtype == np.uint8


def test_stored_images_carry_their_frame_number(recorded: Path, tmp_path: Path) -> None:
    """Without the crop, a 320x240 frame keeps its barcode: decode it from the stored uint8 image."""
    config = load_replay_config(overrides=["images.size=240", "images.crop=false", "audio.keep_pcm=false"])
    convert_sessions([recorded], tmp_path, config, progress=False, log=lambda m: None)
    tensors = load_file(str(tmp_path / "shards" / "rec.safetensors"))
    images, frames = tensors["camera.right"], tensors["camera.right.frame"]
    assert images.shape[1:] == (3, 240, 320)
    decoded = [
        decode_frame_number(np.ascontiguousarray(img.transpose(1, 2, 0)[:, :, ::-1])) for img in images
    ]
    agree = sum(d == f for d, f in zip(decoded, frames.tolist(), strict=True) if f >= 0)
    assert agree == int((frames >= 0).sum()) > 80
