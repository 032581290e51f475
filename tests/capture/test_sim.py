"""The simulator is the ground truth every capture test leans on, so its own promises are pinned with numbers."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from capture.sim import (
    BUTTON_SCHEDULES,
    CONTROL_FIELDS,
    HAND_FIELDS,
    HAND_JOINTS,
    MAX_FRAME_NUMBER,
    POSE_FIELDS,
    TONE_FREQS_HZ,
    SimConfig,
    SimConfigError,
    SimRig,
    decode_frame_number,
    draw_frame_overlay,
)
from tests.helpers import REPO
from vrcap.config import build
from vrcap.errors import ConfigError
from vrcap.quaternion import quat_conj, quat_mul, quat_rotate

RATE = 48000
GRID = np.linspace(0.0, 40.0, 401)


@pytest.fixture(scope="module")
def rig() -> SimRig:
    return SimRig(SimConfig(seed=7))


def _all_motion(rig: SimRig, t: float) -> list[np.ndarray]:
    sides = ("left", "right")
    return [
        rig.head_pose(t),
        *(rig.controller_pose(s, t) for s in sides),
        *(rig.controls(s, t) for s in sides),
        *(rig.hand_joints(s, t) for s in sides),
    ]


# --- motion --------------------------------------------------------------------------------------------------
def test_field_tables_match_what_the_rig_produces_and_the_spec_documents(rig: SimRig) -> None:
    """The tables are compared with the rig's output and with docs/FORMAT.md, not with copies of themselves."""
    assert rig.controller_pose("left", 1.0).shape == (len(POSE_FIELDS),)
    assert rig.controls("left", 1.0).shape == (len(CONTROL_FIELDS),)
    assert rig.hand_joints("left", 1.0).shape == (len(HAND_JOINTS), len(HAND_FIELDS))
    spec = (REPO / "docs" / "FORMAT.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in spec.splitlines() if line.startswith("| `")}
    pose_row = next(v for k, v in rows.items() if k.startswith("`head`"))
    assert f"{len(POSE_FIELDS)} float32" in pose_row
    controls_row = next(v for k, v in rows.items() if k.startswith("`controls_left`"))
    assert ", ".join(CONTROL_FIELDS) in controls_row
    hand_row = next(v for k, v in rows.items() if k.startswith("`hand_left`"))
    assert f"{len(HAND_JOINTS)}×{len(HAND_FIELDS)} float32" in hand_row


def test_same_seed_is_bit_identical_and_another_seed_differs() -> None:
    a, b, c = SimRig(SimConfig(seed=1)), SimRig(SimConfig(seed=1)), SimRig(SimConfig(seed=2))
    for t in (0.0, 1.234, 17.5):
        for x, y in zip(_all_motion(a, t), _all_motion(b, t), strict=True):
            assert x.dtype == np.float64
            assert np.array_equal(x, y)
        assert not np.allclose(a.head_pose(t), c.head_pose(t), atol=1e-3)
    assert np.array_equal(a.camera_frame("left", 42), b.camera_frame("left", 42))
    assert not np.array_equal(a.camera_frame("left", 42), c.camera_frame("left", 42))
    assert np.array_equal(a.audio_block(0, 48000), b.audio_block(0, 48000))
    assert not np.array_equal(a.audio_block(0, 48000), c.audio_block(0, 48000))  # another voice, other words
    assert [e.text for e in a.text_events(30.0)] == [e.text for e in b.text_events(30.0)]
    assert [e.text for e in a.text_events(30.0)] != [e.text for e in c.text_events(30.0)]


@pytest.mark.parametrize("side", ["head", "left", "right"])
def test_quaternions_are_unit_and_continuous(rig: SimRig, side: str) -> None:
    poses = np.array([rig.head_pose(t) if side == "head" else rig.controller_pose(side, t) for t in GRID])
    norms = np.linalg.norm(poses[:, 3:7], axis=1)
    assert np.max(np.abs(norms - 1.0)) < 1e-9
    # 0.1 s apart at < 2 rad/s: consecutive quaternions stay in one hemisphere, dot product near 1.
    assert np.min(np.sum(poses[1:, 3:7] * poses[:-1, 3:7], axis=1)) > 0.9


@pytest.mark.parametrize("side", ["head", "left", "right"])
def test_velocities_match_finite_differences(rig: SimRig, side: str) -> None:
    """Central differences with h = 1e-5 s; truncation and rounding stay far below the 1e-3 tolerance."""

    def pose(t: float) -> np.ndarray:
        return rig.head_pose(t) if side == "head" else rig.controller_pose(side, t)

    h = 1e-5
    for t in GRID:
        before, now, after = pose(t - h), pose(t), pose(t + h)
        linear = (after[:3] - before[:3]) / (2 * h)
        dq = (after[3:7] - before[3:7]) / (2 * h)
        omega = 2.0 * quat_mul(dq, quat_conj(now[3:7]))  # stage-frame ω = 2·(dq/dt)·q⁻¹
        assert np.max(np.abs(linear - now[7:10])) < 1e-3
        assert np.max(np.abs(omega[:3] - now[10:13])) < 1e-3
        assert abs(omega[3]) < 1e-3


def test_head_stays_in_the_documented_ranges(rig: SimRig) -> None:
    poses = np.array([rig.head_pose(t) for t in np.linspace(0, 120, 2401)])
    assert poses[:, 1].min() > 1.45 and poses[:, 1].max() < 1.75
    assert np.max(np.abs(poses[:, [0, 2]])) <= 0.21
    # Yaw from the rotated forward axis: never beyond 60°.
    q = poses[:, 3:7]
    fwd_x = -2 * (q[:, 0] * q[:, 2] + q[:, 3] * q[:, 1])
    fwd_z = -(1 - 2 * (q[:, 0] ** 2 + q[:, 1] ** 2))
    yaw = np.degrees(np.arctan2(-fwd_x, -fwd_z))
    assert np.max(np.abs(yaw)) <= 60.5
    assert np.max(np.abs(yaw)) > 30.0  # and it does turn


def test_controllers_are_held_in_front_of_the_head(rig: SimRig) -> None:
    """Within arm's reach, the task reaches included."""
    far = 0.0
    for t in GRID:
        head = rig.head_pose(t)
        for side in ("left", "right"):
            offset = rig.controller_pose(side, t)[:3] - head[:3]
            distance = float(np.linalg.norm(offset))
            assert 0.25 <= distance <= 0.7
            far = max(far, distance)
    assert far > 0.5  # the reaches do reach


def test_analog_controls_stay_in_range(rig: SimRig) -> None:
    values = np.array([rig.controls(s, t) for s in ("left", "right") for t in np.linspace(0, 60, 3001)])
    assert values[:, :2].min() >= 0.0 and values[:, :2].max() <= 1.0
    assert values[:, :2].max() > 0.99 and values[:, :2].min() < 0.01  # full travel is used
    assert np.max(np.hypot(values[:, 2], values[:, 3])) <= 0.9 + 1e-12
    assert set(np.unique(values[:, 4:])) == {0.0, 1.0}


@pytest.mark.parametrize("button", list(BUTTON_SCHEDULES))
@pytest.mark.parametrize("side", ["left", "right"])
def test_buttons_follow_their_schedule(rig: SimRig, side: str, button: str) -> None:
    column = CONTROL_FIELDS.index(button)
    schedule = BUTTON_SCHEDULES[button]
    presses = schedule.presses(side, 30.0)
    assert len(presses) >= 2
    assert presses[0][0] == schedule.first_press_s(side)
    eps = 1e-6
    assert rig.controls(side, 0.0)[column] == 0.0
    for press, release in presses:
        assert release - press == pytest.approx(schedule.held_s)
        assert rig.controls(side, press - eps)[column] == 0.0
        assert rig.controls(side, press + eps)[column] == 1.0
        assert rig.controls(side, release - eps)[column] == 1.0
        assert rig.controls(side, release + eps)[column] == 0.0


@pytest.mark.parametrize(("side", "first_s"), [("left", 1.0), ("right", 1.5)])
def test_button_a_is_held_a_quarter_second_every_two_seconds(rig: SimRig, side: str, first_s: float) -> None:
    """The brief's numbers, measured from the rig's output at 1 kHz rather than read back from the table."""
    t = np.arange(0.0, 10.0, 0.001) + 0.0005  # half a step off the edges: no float ties
    pressed = np.array([rig.controls(side, x)[CONTROL_FIELDS.index("button_a")] for x in t]) == 1.0
    edges = np.flatnonzero(np.diff(pressed.astype(np.int8)))
    starts, ends = t[edges[::2] + 1], t[edges[1::2] + 1]
    assert starts[0] == pytest.approx(first_s, abs=0.001)
    assert np.allclose(np.diff(starts), 2.0, atol=0.002) and np.allclose(ends - starts, 0.25, atol=0.002)


def test_hands_are_plausible_skeletons_near_the_controller(rig: SimRig) -> None:
    for t in GRID[::4]:
        for side in ("left", "right"):
            joints = rig.hand_joints(side, t)
            assert joints.shape == (26, 8)
            grip = rig.controller_pose(side, t)[:3]
            assert np.max(np.linalg.norm(joints[:, :3] - grip, axis=1)) < 0.25
            assert np.max(np.abs(np.linalg.norm(joints[:, 3:7], axis=1) - 1.0)) < 1e-9
            assert joints[:, 7].min() >= 0.005 and joints[:, 7].max() <= 0.012
            tip = joints[HAND_JOINTS.index("middle_tip"), :3]
            wrist = joints[HAND_JOINTS.index("wrist"), :3]
            assert 0.05 < np.linalg.norm(tip - wrist) < 0.2  # fist .. open hand


def test_index_finger_curls_with_the_trigger(rig: SimRig) -> None:
    """A pulled trigger brings the index tip closer to the wrist than a released one."""
    ts = np.linspace(0, 20, 801)
    triggers = np.array([rig.controls("right", t)[0] for t in ts])
    tip, wrist = HAND_JOINTS.index("index_tip"), HAND_JOINTS.index("wrist")

    def reach(t: float) -> float:
        joints = rig.hand_joints("right", t)
        return float(np.linalg.norm(joints[tip, :3] - joints[wrist, :3]))

    assert reach(ts[np.argmax(triggers)]) < reach(ts[np.argmin(triggers)]) - 0.03


def test_left_and_right_hands_are_mirror_images(rig: SimRig) -> None:
    """In the grip frame the right thumb is on -X (left of the little finger), the left thumb on +X."""
    thumb, little = HAND_JOINTS.index("thumb_tip"), HAND_JOINTS.index("little_tip")
    for t in GRID[::10]:
        for side, sign in (("left", 1.0), ("right", -1.0)):
            grip = rig.controller_pose(side, t)
            joints = rig.hand_joints(side, t)
            local = quat_rotate(quat_conj(grip[3:7]), joints[:, :3] - grip[:3])
            assert sign * (local[thumb, 0] - local[little, 0]) > 0.03


def test_bad_side_is_refused(rig: SimRig) -> None:
    with pytest.raises(ValueError, match="'left' or 'right'"):
        rig.controller_pose("middle", 0.0)


# --- audio ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio(rig: SimRig) -> np.ndarray:
    return rig.audio_block(0, 12 * RATE)


def test_audio_blocks_concatenate_bit_exactly(rig: SimRig, audio: np.ndarray) -> None:
    assert audio.dtype == np.int16 and audio.shape == (12 * RATE, 1)
    assert np.array_equal(
        rig.audio_block(0, 960), np.concatenate([rig.audio_block(0, 480), rig.audio_block(480, 480)])
    )
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(audio)), 400, replace=False))
    bounds = [0, *cuts.tolist(), len(audio)]
    pieces = [rig.audio_block(a, b - a) for a, b in itertools.pairwise(bounds)]
    assert np.array_equal(np.concatenate(pieces), audio)
    assert rig.audio_block(100, 0).shape == (0, 1)


def test_audio_events_are_where_documented(rig: SimRig) -> None:
    events = rig.audio_events(12.0)
    tones = [e for e in events if e.kind == "tone"]
    chirps = [e for e in events if e.kind == "chirp"]
    assert [e.start_s for e in tones] == [0.5 + k for k in range(12)]
    assert [e.freq_hz for e in tones[:4]] == [1000.0, 1500.0, 2000.0, 1000.0]
    assert all(e.duration_s == pytest.approx(0.1) and e.amplitude == 0.5 for e in tones)
    assert [e.start_s for e in chirps] == pytest.approx([3.2, 8.2])
    assert all((e.freq_hz, e.end_freq_hz) == (200.0, 4000.0) for e in chirps)
    for earlier, later in itertools.pairwise(events):  # nothing overlaps; >= 40 ms of silence
        assert later.start_s - (earlier.start_s + earlier.duration_s) >= 0.04
    assert rig.audio_events(0.5) == [] and len(rig.audio_events(0.5001)) == 1


def test_silence_between_events_is_exactly_zero(rig: SimRig, audio: np.ndarray) -> None:
    inside = np.zeros(len(audio), dtype=bool)
    for event in rig.audio_events(12.0):
        start = round(event.start_s * RATE)
        inside[start : start + round(event.duration_s * RATE)] = True
    assert np.count_nonzero(audio[~inside]) == 0
    # Tones at 1-2 kHz hit exact zero crossings on the 48 kHz grid (1 sample in 12 at 2 kHz).
    assert np.count_nonzero(audio[inside]) > 0.9 * np.count_nonzero(inside)


def test_each_event_starts_on_its_sample(rig: SimRig, audio: np.ndarray) -> None:
    """Tones and chirps start at full level on their sample (words fade in: tests/capture/test_sim_tasks.py)."""
    mono = audio[:, 0]
    for event in [e for e in rig.audio_events(12.0) if e.kind != "word"]:
        start = round(event.start_s * RATE)
        window = mono[start - 100 : start + 100]
        first = start - 100 + int(np.flatnonzero(window)[0])
        assert abs(first - start) <= 1
        peak = np.abs(mono[start : start + round(event.duration_s * RATE)].astype(int)).max()
        assert abs(peak - 0.5 * 32767) <= 2


def test_tone_frequencies(rig: SimRig, audio: np.ndarray) -> None:
    for event in [e for e in rig.audio_events(12.0) if e.kind == "tone"]:
        start = round(event.start_s * RATE)
        burst = audio[start : start + round(event.duration_s * RATE), 0].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(burst, n=RATE))  # zero-padded to 1 Hz bins
        assert abs(float(np.argmax(spectrum)) - event.freq_hz) <= 5.0
        assert event.freq_hz in TONE_FREQS_HZ


def test_chirp_sweeps_upward(rig: SimRig, audio: np.ndarray) -> None:
    chirp = next(e for e in rig.audio_events(12.0) if e.kind == "chirp")
    start, n = round(chirp.start_s * RATE), round(chirp.duration_s * RATE)
    thirds = [audio[start + i * n // 3 : start + (i + 1) * n // 3, 0].astype(float) for i in range(3)]
    peaks = [float(np.argmax(np.abs(np.fft.rfft(x, n=RATE)))) for x in thirds]
    assert peaks[0] < peaks[1] < peaks[2]
    assert 200.0 < peaks[0] < 1600.0 and 2600.0 < peaks[2] < 4000.0


def test_multichannel_audio_is_the_mono_signal_with_per_channel_gain() -> None:
    rig = SimRig(SimConfig(audio_channels=3))
    block = rig.audio_block(24000, 4800).astype(float)
    assert block.shape == (4800, 3)
    assert np.max(np.abs(block[:, 1] - 0.8 * block[:, 0])) <= 1.0
    assert np.max(np.abs(block[:, 2] - 0.64 * block[:, 0])) <= 1.0


# --- camera --------------------------------------------------------------------------------------------------
FRAME_NUMBERS = [0, 1, 2, 1000, 123456, 2**31 - 1, MAX_FRAME_NUMBER]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (320, 240)])
def test_frame_number_round_trips(size: tuple[int, int]) -> None:
    rig = SimRig(SimConfig(camera_width=size[0], camera_height=size[1]))
    for k in FRAME_NUMBERS:
        image = rig.camera_frame("left", k)
        assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8
        half = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        assert decode_frame_number(image) == k
        assert decode_frame_number(_jpeg(image, 50)) == k
        assert decode_frame_number(half) == k
        assert decode_frame_number(_jpeg(half, 50)) == k
        assert decode_frame_number(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) == k


def test_images_without_a_barcode_decode_to_none() -> None:
    rng = np.random.default_rng(0)
    assert decode_frame_number(np.zeros((480, 640, 3), np.uint8)) is None
    assert decode_frame_number(np.full((480, 640, 3), 255, np.uint8)) is None
    assert decode_frame_number(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) is None
    assert decode_frame_number(np.zeros((10, 20, 3), np.uint8)) is None


def test_frame_number_out_of_range_is_refused(rig: SimRig) -> None:
    with pytest.raises(ValueError, match="frame_number"):
        rig.camera_frame("left", MAX_FRAME_NUMBER + 1)
    with pytest.raises(ValueError, match="no camera 'top'"):
        rig.camera_frame("top", 0)


def test_text_line_is_drawn(rig: SimRig) -> None:
    """Over a flat grey image the overlays of frames 1 and 2 differ outside the barcode: that is the text."""
    blank = np.full((480, 640, 3), 128, np.uint8)
    one, two = blank.copy(), blank.copy()
    draw_frame_overlay(one, "left", 1, rig.camera_frame_time(1))
    draw_frame_overlay(two, "left", 2, rig.camera_frame_time(2))
    barcode_rows = 3 * 640 // 40
    assert np.count_nonzero(np.any(one[barcode_rows:] != two[barcode_rows:], axis=2)) > 50
    # The rendered frame carries the same text pixels: the white core of every glyph.
    frame = rig.camera_frame("left", 1)
    core = np.all(one == 255, axis=2)
    core[:barcode_rows] = False
    assert np.count_nonzero(core) > 300
    assert np.all(frame[core] == 255)


def test_frame_times_and_stereo_difference(rig: SimRig) -> None:
    assert rig.camera_frame_time(123) == pytest.approx(4.1)
    assert rig.frame_time(90) == pytest.approx(1.0)
    left, right = rig.camera_frame("left", 60), rig.camera_frame("right", 60)
    changed = np.count_nonzero(np.any(left[100:] != right[100:], axis=2))
    assert 100 < changed < 0.2 * left[100:].shape[0] * left.shape[1]  # slightly different, not another scene


def test_jpeg_size_is_realistic(rig: SimRig) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 90]
    sizes = [len(cv2.imencode(".jpg", rig.camera_frame("left", k), params)[1]) for k in range(0, 300, 50)]
    assert min(sizes) >= 30_000 and max(sizes) <= 80_000


# --- config --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"headset_rate_hz": 0},
            r"sim\.headset_rate_hz must be in \(0, 1000\] \(got 0\.0\); the default is 90\.0",
        ),
        ({"headset_rate_hz": float("nan")}, r"sim\.headset_rate_hz must be in \(0, 1000\]"),
        ({"camera_fps": -30.0}, r"sim\.camera_fps must be in \(0, 1000\]"),
        (
            {"audio_rate_hz": 8000},
            "sim.audio_rate_hz must be between 16000 and 384000 .got 8000.; the default is 48000",
        ),
        ({"audio_rate_hz": 48000.5}, "sim.audio_rate_hz must be an integer"),
        ({"audio_channels": 0}, "sim.audio_channels must be between 1 and 32"),
        ({"audio_block": 0}, "sim.audio_block must be between 1 and 96000 .got 0.; the default is 480"),
        ({"cameras": ["left", ""]}, "name ''; camera names must be non-empty"),
        ({"cameras": ["Left"]}, "camera names must be non-empty and use only a-z, 0-9 and '_'"),
        ({"cameras": ["left", "left"]}, "lists a camera twice"),
        ({"camera_width": 160}, "sim.camera_width must be between 320 and 7680 .got 160."),
        ({"camera_width": 1280, "camera_height": 100}, r"camera_height must be >= 160, got 100"),
        ({"seed": -1}, "sim.seed must be between 0 and"),
        ({"hands": "maybe"}, "sim.hands"),
    ],
)
def test_config_rejects_bad_values_with_the_fix(kwargs: dict[str, object], message: str) -> None:
    """Through `build`, as `--config`/overrides reach it: one line naming the key, its range and the default."""
    with pytest.raises(ConfigError, match=message) as caught:
        build(SimConfig, kwargs, "sim")
    assert "\n" not in str(caught.value)


def test_config_refuses_bad_values_when_built_in_code_too() -> None:
    """Code that makes a SimConfig directly gets the schema's bound or the cross-field check, never a bad rig."""
    with pytest.raises(ValueError, match="greater than or equal to 16000"):
        SimConfig(audio_rate_hz=8000)
    with pytest.raises(SimConfigError, match="camera_height must be >= 160"):
        SimConfig(camera_width=1280, camera_height=100)
    with pytest.raises(ValueError, match="valid boolean"):
        SimConfig(hands="yes")  # type: ignore[arg-type]


def test_config_normalises_camera_lists() -> None:
    config = SimConfig(cameras=["left", "right", "chest_1"])  # type: ignore[arg-type]
    assert config.cameras == ("left", "right", "chest_1")
    assert SimConfig(cameras=()).cameras == ()
