"""`vrcap record --source sim --offline`: the same session a live sim recording writes, without the waiting."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from capture.sim import SimConfig, SimRig, decode_frame_number
from tests.helpers import run_vrcap
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader

SMALL = ("sim.camera_width=320", "sim.camera_height=240", "writer.fsync=false")
SECONDS = 3.0


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline")
    done = run_vrcap(
        "record", "--session", "off", "--root", str(root), "--source", "sim", "--duration", str(SECONDS),
        "--offline", "sim.seed=3", *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "x real time" in done.stderr
    return root / "off"


def test_offline_session_validates_and_has_every_frame(offline: Path) -> None:
    done = run_vrcap("validate", str(offline), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    meta = load_meta(offline)
    assert meta.stats["packets"] == SECONDS * 90 and meta.stats["drops"] == {}
    last_frame_s = (SECONDS * 90 - 1) / 90  # a block is in the first packet after its last sample happened
    assert meta.stats["samples"]["audio"] == int(last_frame_s * 48000) // 480 == 298
    assert meta.stats["samples"]["camera_left"] == SECONDS * 30
    assert meta.config["record"]["offline"] is True and meta.stop["reason"].endswith("(offline)")


def test_offline_session_has_the_streams_and_clocks_of_a_live_one(offline: Path, tmp_path: Path) -> None:
    done = run_vrcap(
        "record", "--session", "live", "--root", str(tmp_path), "--duration", "0.5", "sim.seed=3", *SMALL
    )
    assert done.returncode == 0, done.stderr
    live, off = load_meta(tmp_path / "live"), load_meta(offline)
    assert [s.to_dict() for s in off.streams] == [s.to_dict() for s in live.streams]
    assert set(off.clocks) == set(live.clocks) == {"headset", "audio", "camera_left", "camera_right"}
    t0 = off.clocks["headset"]["mono_ns_at_zero"]
    assert off.clocks["audio"]["segments"][0]["a_ns"] == t0 and off.start["mono_ns"] == t0


def test_offline_values_are_the_ground_truth_at_exact_frame_times(offline: Path) -> None:
    rig = SimRig(SimConfig(camera_width=320, camera_height=240, seed=3))
    t0 = load_meta(offline).clocks["headset"]["mono_ns_at_zero"]
    worst, frames, pcm = 0.0, [], []
    with SessionReader(offline) as reader:
        for k, packet in enumerate(reader.packets()):
            assert packet["seq"] == k and packet["t"] == t0 + round(k * 1e9 / 90)
            head = packet["s"]["head"][0]
            got = np.frombuffer(head["d"], "<f4")
            worst = max(worst, float(np.abs(got - rig.head_pose(head["st"] / 1e9)).max()))
            for sample in packet["s"].get("camera_left", []):
                image = cv2.imdecode(np.frombuffer(sample["d"], np.uint8), cv2.IMREAD_COLOR)
                frames.append(decode_frame_number(image))
            pcm.extend(np.frombuffer(s["d"], "<i2") for s in packet["s"].get("audio", []))
    assert worst < 1e-6  # float32 rounding of the exact value
    assert frames == list(range(int(SECONDS * 30)))
    audio = np.concatenate(pcm)
    assert np.array_equal(audio, rig.audio_block(0, audio.size)[:, 0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--audio", "pulse"), "--offline records the simulated microphone only"),
        (("--camera", "front=0"), "drop --camera"),
        (("--source", "openxr"), "--offline needs the simulator"),
    ],
)
def test_offline_refuses_live_devices_in_one_line(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    done = run_vrcap(
        "record", "--session", "x", "--root", str(tmp_path), "--duration", "1", "--offline", *extra
    )
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_offline_needs_a_duration(tmp_path: Path) -> None:
    done = run_vrcap("record", "--session", "x", "--root", str(tmp_path), "--offline")
    assert done.returncode == 2 and "--duration SECONDS" in done.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimRig, dict[str, np.ndarray], int]:
    """12 s offline (no cameras: quick), converted at 30 Hz."""
    from safetensors.numpy import load_file

    from replay.config import load_replay_config
    from replay.convert import convert_sessions

    root = tmp_path_factory.mktemp("text")
    done = run_vrcap(
        "record", "--session", "txt", "--root", str(root), "--duration", "12", "--offline", "sim.seed=5",
        "sim.cameras=[]", "writer.fsync=false",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    convert_sessions([root / "txt"], root / "t", load_replay_config(), progress=False, log=lambda m: None)
    shard = load_file(str(root / "t" / "shards" / "txt.safetensors"))
    t0 = load_meta(root / "txt").clocks["headset"]["mono_ns_at_zero"]
    return SimRig(SimConfig(seed=5, cameras=())), shard, t0


def test_instructions_and_transcripts_land_at_their_replay_steps(
    converted: tuple[SimRig, dict[str, np.ndarray], int],
) -> None:
    from replay.tokenizer import decode

    rig, shard, t0 = converted
    steps = shard["time_ns"]
    last_frame_ns = round((12 * 90 - 1) * 1e9 / 90)  # a frame carries the events at or before its time
    events = [e for e in rig.text_events(12.0) if e.t_s * 1e9 <= last_frame_ns]
    assert {e.channel for e in events} == {"internal", "external"} and len(events) >= 6
    expected: dict[tuple[str, int], list[str]] = {}
    for e in events:
        k = int(np.searchsorted(steps, t0 + round(e.t_s * 1e9), side="right") - 1)  # the step it falls in
        expected.setdefault((e.channel, k), []).append(e.text)
    got = {
        (channel, int(k)): decode(shard[f"text.{channel}"][k].tolist())
        for channel in ("internal", "external")
        for k in np.flatnonzero(shard[f"text.{channel}.mask"])
    }
    assert got == expected


def test_the_instruction_step_comes_before_the_hand_moves(
    converted: tuple[SimRig, dict[str, np.ndarray], int],
) -> None:
    """In the tensors: at the instruction's step the hand is where it would be without the task; half-way
    through the motion it is far from there."""
    rig, shard, t0 = converted
    steps = (shard["time_ns"] - t0) / 1e9
    checked = 0
    for task in rig.tasks.until(10.0):
        if task.kind in ("idle", "look_at") or task.motion_end_s > steps[-1]:
            continue
        joint = 1 if task.side == "left" else 2  # pose rows: head, controller_left, controller_right
        k_said = int(np.searchsorted(steps, task.start_s, side="right") - 1)
        k_mid = int(np.searchsorted(steps, 0.5 * (task.motion_start_s + task.motion_end_s)))
        at_instruction = shard["pose"][k_said, joint, :3]
        mid = shard["pose"][k_mid, joint, :3]
        assert k_said < k_mid and not np.any(rig.tasks.offsets(task.side, steps[k_said])[0])
        assert float(np.linalg.norm(mid - at_instruction)) > 0.1  # the reach: > 10 cm from where it started
        checked += 1
    assert checked >= 1
