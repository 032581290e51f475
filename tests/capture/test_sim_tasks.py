"""The task-structured simulator: seeded tasks, instructions before motion, speech and transcripts, with numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from capture.sim import EPISODE_S, TASK_KINDS, SimConfig, SimRig
from capture.sim_tasks import LEAD_S
from replay.tokenizer import encode

RATE = 48000
SECONDS = 60.0


@pytest.fixture(scope="module")
def rig() -> SimRig:
    return SimRig(SimConfig(seed=11))


@pytest.fixture(scope="module")
def audio(rig: SimRig) -> np.ndarray:
    return rig.audio_block(0, int(SECONDS * RATE))[:, 0]


def test_two_seeds_give_different_tasks_motion_audio_and_text() -> None:
    a, b = SimRig(SimConfig(seed=1)), SimRig(SimConfig(seed=2))
    kinds_a = [t.kind for t in a.tasks.until(SECONDS)]
    kinds_b = [t.kind for t in b.tasks.until(SECONDS)]
    assert kinds_a != kinds_b and len(kinds_a) >= 12
    ts = np.linspace(0, SECONDS, 601)
    moved = np.array(
        [np.linalg.norm(a.controller_pose("right", t)[:3] - b.controller_pose("right", t)[:3]) for t in ts]
    )
    assert np.median(moved) > 0.02  # centimetres apart most of the time, not a rounding difference
    pcm_a, pcm_b = a.audio_block(0, 10 * RATE), b.audio_block(0, 10 * RATE)
    assert np.mean(pcm_a != pcm_b) > 0.3
    assert [e.text for e in a.text_events(SECONDS)] != [e.text for e in b.text_events(SECONDS)]


def test_the_vocabulary_is_used(rig: SimRig) -> None:
    kinds = {t.kind for t in rig.tasks.until(600.0)}
    assert kinds == set(TASK_KINDS)
    assert {"reach_left", "reach_right", "reach_up", "reach_forward", "pick_and_place", "wave", "point",
            "look_at", "idle"} <= kinds  # fmt: skip


def test_every_instruction_precedes_its_motion(rig: SimRig) -> None:
    """The instruction comes LEAD_S before the motion; before it, the task adds nothing; during it, a lot."""
    checked = 0
    for task in rig.tasks.until(120.0):
        assert LEAD_S[0] <= task.motion_start_s - task.start_s <= LEAD_S[1]
        if task.kind == "idle":
            assert all(
                not np.any(rig.tasks.offsets(p, task.motion_start_s + 0.5)[0])
                for p in ("head", "left", "right")
            )
            continue
        part = "head" if task.kind == "look_at" else task.side
        before = rig.tasks.offsets(part, task.motion_start_s - 0.01)[0]
        middle = rig.tasks.offsets(part, 0.5 * (task.motion_start_s + task.motion_end_s) - 0.1)[0]
        assert not np.any(before)
        assert np.abs(middle).max() > 0.1  # > 10 cm or > 0.1 rad: far beyond the free-running wander per step
        checked += 1
    assert checked >= 20


def test_instruction_determines_the_transcript(rig: SimRig) -> None:
    """The pair is learnable: one instruction text always comes with one transcript text."""
    pairs: dict[str, set[str]] = {}
    events = rig.text_events(600.0)
    for e in events:
        if e.channel == "internal":
            pairs.setdefault(e.text, set())
    for task in rig.tasks.until(600.0):
        pairs[task.instruction].add(task.transcript)
    assert all(len(v) == 1 for v in pairs.values()) and len(pairs) >= 15
    assert max(len(encode(e.text)) for e in events) <= 64  # fits replay's default text.max_tokens


def test_transcripts_are_stamped_at_their_first_word(rig: SimRig, audio: np.ndarray) -> None:
    words = [e for e in rig.audio_events(SECONDS) if e.kind == "word"]
    firsts = {round(w.start_s * RATE): w for w in words}
    transcripts = [e for e in rig.text_events(SECONDS) if e.channel == "external"]
    instructions = {
        (e.task.episode, e.task.index): e for e in rig.text_events(SECONDS) if e.channel == "internal"
    }
    assert len(transcripts) >= 12
    for e in transcripts:
        start = round(e.t_s * RATE)
        assert start in firsts and firsts[start].text == e.text.split()[0]
        assert e.t_s > instructions[e.task.episode, e.task.index].t_s  # said after the instruction is given
        assert not audio[start - round(0.04 * RATE) : start].any()  # silence just before: speech starts here
        assert np.abs(audio[start : start + round(0.05 * RATE)]).max() > 0.05 * 32767


def test_audio_is_not_mostly_silence(audio: np.ndarray) -> None:
    silent = float(np.mean(audio == 0))
    print(f"exactly zero: {silent:.1%} of {SECONDS:.0f} s")
    assert silent < 0.5
    assert np.abs(audio.astype(np.int32)).max() <= 0.5 * 32767 + 1


def test_a_word_sounds_the_same_each_time_and_unlike_other_words(rig: SimRig, audio: np.ndarray) -> None:
    words = [e for e in rig.audio_events(SECONDS) if e.kind == "word"]
    by_text: dict[str, list[np.ndarray]] = {}
    for w in words:
        start = round(w.start_s * RATE)
        by_text.setdefault(w.text, []).append(
            audio[start : start + round(w.duration_s * RATE)].astype(np.float64)
        )
    repeated = [v for v in by_text.values() if len(v) >= 2]
    assert repeated and all(np.array_equal(v[0], v[1]) for v in repeated)

    def spectrum(x: np.ndarray) -> np.ndarray:
        s = np.abs(np.fft.rfft(x, n=8192))
        return s / np.linalg.norm(s)

    spectra = {text: spectrum(v[0]) for text, v in by_text.items()}
    texts = sorted(spectra)
    similar = [float(spectra[p] @ spectra[q]) for i, p in enumerate(texts) for q in texts[i + 1 :]]
    assert np.median(similar) < 0.8  # different words have different spectra


def test_without_tasks_the_sim_is_the_calibration_rig() -> None:
    rig = SimRig(SimConfig(tasks=False))
    assert rig.tasks is None and rig.text_events(60.0) == []
    assert all(e.kind in ("tone", "chirp") for e in rig.audio_events(20.0))
    assert np.mean(rig.audio_block(0, 10 * RATE) == 0) > 0.8


def test_speech_off_keeps_tasks_and_instructions_only() -> None:
    rig = SimRig(SimConfig(speech=False, seed=11))
    channels = {e.channel for e in rig.text_events(SECONDS)}
    assert channels == {"internal"}
    assert all(e.kind != "word" for e in rig.audio_events(SECONDS))


def test_any_time_is_answered_without_drawing_the_past(rig: SimRig) -> None:
    """Episodes are drawn on their own: a time a century in costs one episode, and no task crosses one."""
    started = time.perf_counter()
    far = 3.0e9
    rig.head_pose(far)
    rig.audio_block(int(far * RATE), 480)
    assert time.perf_counter() - started < 30.0  # one episode takes milliseconds; drawing the past, days
    for number in (0, 1, 2):
        tasks = rig.tasks.episode(number).tasks
        assert tasks[0].start_s >= number * EPISODE_S and tasks[-1].end_s <= (number + 1) * EPISODE_S
