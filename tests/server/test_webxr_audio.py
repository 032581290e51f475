"""The page's microphone: chromium's fake capture fed a WAV of clicks every 0.5 s; the recorded blocks carry
every sample, in order, and the stored clock mapping puts the clicks at their host times.

What can be known exactly here is the clicks' spacing (the WAV's), not the instant chromium starts playing
the file (its fake device starts in fits: the first click came 191-259 ms after the first recorded sample in
three runs, against 250 ms in the file); so the test asserts the spacing between mapped clicks (the mapping's
rate and the samples' continuity: 0.000 ms off in every run) and that the clicks lie on the recording's own
host timeline, and prints the first click's offset.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_vrcap, wait_for
from tests.server.live import ServeProcess
from tests.server.webxr_rig import headset_browser
from vrcap.metadata import load_meta
from vrcap.reader import SessionReader

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

RATE = 48000
PERIOD_S = 0.5
FIRST_S = 0.25


def click_wav(path: Path, seconds: float = 20.0) -> Path:
    signal = np.zeros(int(seconds * RATE), dtype=np.int16)
    for k in range(int((seconds - FIRST_S) / PERIOD_S)):
        start = int((FIRST_S + k * PERIOD_S) * RATE)
        signal[start : start + 48] = 26000  # a 1 ms click
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(signal.tobytes())
    return path


def test_clicks_land_at_their_host_times_through_the_stored_mapping(
    serve: ServeProcess, tmp_path: Path
) -> None:
    name = "clicks-from-the-headset"
    with headset_browser(audio_wav=click_wav(tmp_path / "clicks.wav")) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{serve.url}/#token={serve.token}")
        page.wait_for_selector("#main", state="visible")
        wait_for(
            lambda: page.locator("#mic").input_value() == "webxr", 10, "the picker to offer this headset"
        )
        page.fill("#session", name)
        page.click("#start")
        wait_for(
            lambda: "recording from this headset" in page.locator("#rec-msg").inner_text(), 20, "the welcome"
        )
        # Seconds of sound, not XR frames: under load the fake microphone starts late and in fits, so 150 frames
        # once held only ~1 s of audio (2 clicks). 5 s of samples hold >= 8 clicks after the first second.
        wait_for(
            lambda: page.evaluate("() => window.vrcapCapture.audioSamples") > 5 * RATE,
            60,
            "5 s of microphone samples",
        )
        wait_for(
            lambda: page.evaluate("() => window.vrcapCapture.queue.length") == 0,
            20,
            "the page's queue to drain",
        )
        stamps = np.array(page.evaluate("() => window.vrcapCapture.audioStamps"), dtype=np.float64)
        page.evaluate("() => window.vrcapCapture.session.end()")
        wait_for(
            lambda: "saved" in page.locator("#rec-msg").inner_text(), 30, "the page to stop the recording"
        )
    path = serve.root / "sessions" / name
    assert run_vrcap("validate", str(path)).returncode == 0
    meta = load_meta(path)
    audio = meta.stream("audio")
    assert audio is not None and audio.source == "webxr" and audio.rate_hz == RATE
    with SessionReader(path) as reader:
        blocks = [b for p in reader.packets() for b in p["s"].get("audio", [])]
    index = np.array([b["i"] for b in blocks])
    counts = np.array([b["n"] for b in blocks])
    gaps = np.diff(index) - counts[:-1]
    assert (gaps >= 0).all(), "no sample repeated"
    settled = index[1:] > index[0] + RATE  # the fake device starts in fits (gaps in its first second)
    assert (gaps[settled] == 0).all(), f"samples missing after the first second: {gaps[settled].sum()}"
    pcm = np.concatenate([np.frombuffer(b["d"], "<i2") for b in blocks])
    sample_index = np.concatenate([np.arange(b["i"], b["i"] + b["n"]) for b in blocks])  # gaps included
    loud = sample_index[pcm > 13000]
    onsets = loud[np.insert(np.diff(loud) > 100, 0, True)]
    assert len(onsets) >= 4, f"{len(onsets)} clicks heard"
    segment = meta.clocks["audio"]["segments"][-1]
    host_ns = segment["a_ns"] + segment["b_ns"] * onsets.astype(np.float64)
    later = onsets[1:] > index[0] + RATE  # pairs within the settled part (see above)
    spacing_error_ms = ((np.diff(host_ns) / 1e6) - PERIOD_S * 1e3)[later]
    first_click_ms = (
        (onsets[0] - index[0]) / RATE * 1e3
    )  # where the WAV puts it after the first sample: 250 ms
    print(
        f"clicks {len(onsets)}; spacing error max {np.abs(spacing_error_ms).max():.3f} ms; first click "
        f"{first_click_ms:.1f} ms after the first recorded sample (the WAV: {FIRST_S * 1e3:.0f} ms + k·500)"
    )
    # Chromium's fake device plays its file in 10 ms buffers on a timer: under load it skips whole buffers of the
    # file (seen: 10, 50, 60 and 100 ms between two clicks) while its AudioContext counts on, so there is no gap
    # to see; once (CI, 2026-12-02) it played one buffer twice or late (+10 ms between two clicks, and the first
    # click 260.7 ms in instead of 250). That is the browser's, not the mapping's: a wrong rate or a torn mapping
    # would leave spacings off by fractions of a buffer, so every spacing must be 500 ms give or take whole 10 ms
    # buffers, the typical one exact, and most of them exact.
    assert float(np.median(np.abs(spacing_error_ms))) < 0.1
    off_buffer = np.abs(spacing_error_ms - np.round(spacing_error_ms / 10.0) * 10.0)
    assert (off_buffer < 1.0).all(), spacing_error_ms
    assert (np.abs(spacing_error_ms) < 1.0).mean() >= 0.6, spacing_error_ms
    # One clock for frames and sound. Each head pose stores its page time (st) and its host time (t): their
    # difference is the page clock's offset, steady through the recording when frames are mapped well.
    heads = [s for p in SessionReader(path).packets() for s in p["s"].get("head", [])]
    offsets = np.array([s["t"] - s["st"] for s in heads], dtype=np.float64)
    assert offsets.max() - offsets.min() < 50e6, (
        f"frame offsets spread {(offsets.max() - offsets.min()) / 1e6} ms"
    )
    # The page stamped every 8th audio block (end frame, page ms) as it arrived: late, never early. Through the
    # frames' offset those stamps are host times; the stored audio mapping must put each block's end at or just
    # before its stamp (before this was fixed, a loaded machine once put the sound 2.9 s early).
    theta = float(np.median(offsets))
    stamp_host = stamps[:, 1] * 1e6 + theta
    mapped = segment["a_ns"] + segment["b_ns"] * stamps[:, 0]
    lateness_ms = (stamp_host - mapped) / 1e6
    print(
        f"audio stamps late by {lateness_ms.min():.1f}..{lateness_ms.max():.1f} ms against the stored mapping"
    )
    # Blocks that reached the page's main thread while it was busy are late by up to ~360 ms (seen in CI at the
    # start); the earliest of them lie on the mapping's line: the mapping is their lower envelope.
    assert -20 < lateness_ms.min() < 20, lateness_ms
