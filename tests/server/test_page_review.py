"""The companion page v2 in a real browser at 1280x720 and 412x915: review a session, follow a job, lose the server.

Pixels are read back from screenshots (tests/server/page_rig.py): a plot counts as drawn when its curves' colours
cover enough of its canvas, a thumbnail when the image decoded to the size asked for and is not blank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import STREAMS, require_module, run_vrcap, synthetic_packet, wait_for
from tests.server.live import ServeProcess
from tests.server.page_rig import (
    SIZES,
    browser,
    close_chromium,
    count_colour,
    pixels,
    serious_violations,
    shot,
)
from vrcap.writer import SessionWriter, WriterConfig

require_module("playwright", "it is in the dev extra: pip install -e '.[dev]'")
from playwright.sync_api import Page, expect  # noqa: E402 (after the check that names the fix)

SESSION = "reviewed"
CURVES = ("#58a6ff", "#f0883e", "#3fb950", "#d2a8ff")  # charts.js's first colours: one per series


@pytest.fixture(scope="module", autouse=True)
def one_chromium() -> Iterator[None]:
    yield
    close_chromium()


def record_offline(root: Path, name: str, seconds: int = 6) -> None:
    done = run_vrcap(
        "record", "--session", name, "--source", "sim", "--duration", str(seconds), "--offline",
        "--root", str(root / "sessions"), "sim.camera_width=320", "sim.camera_height=240", "writer.fsync=false",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def write_silent(path: Path, frames: int = 270) -> None:
    """A session whose microphone recorded digital silence (every sample 0) while the head moved; frames 100-104
    were dropped, and from frame 200 on everything is 0.6 s later (a pause)."""
    with SessionWriter.create(path, STREAMS, config=WriterConfig(fsync=False)) as writer:
        for seq in range(frames):
            if 100 <= seq < 105:
                continue
            packet = synthetic_packet(seq)
            packet["s"]["audio"][0]["d"] = bytes(len(packet["s"]["audio"][0]["d"]))
            if seq >= 200:
                packet["t"] += 600_000_000
                for samples in packet["s"].values():
                    samples[0]["t"] += 600_000_000
            writer.write_packet(packet)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("page-review")
    record_offline(root, SESSION)
    write_silent(root / "sessions" / "silent-mic")
    with ServeProcess(root) as server:
        yield server


def open_paired(page: Page, server: ServeProcess) -> None:
    page.goto(f"{server.url}/#token={server.token}")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#conn")).to_have_text("live", timeout=10_000)


def drawn(page: Page, canvas: str, colours: tuple[str, ...] = CURVES, least: int = 40) -> dict[str, int]:
    image = pixels(page.locator(canvas))
    counts = {c: count_colour(image, c) for c in colours}
    assert all(n >= least for n in counts.values()), (canvas, counts)
    return counts


@pytest.mark.parametrize("size", list(SIZES))
def test_review_a_recorded_session(served: ServeProcess, size: str) -> None:
    with browser(size) as page:
        open_paired(page, served)
        page.click(f"#sessions li[data-session='{SESSION}'] button.review")
        card = page.locator("#review-card")
        expect(card).to_have_attribute("data-ready", "1", timeout=20_000)
        expect(page.locator("#review-validation")).to_contain_text("complete and readable")
        expect(page.locator("#review-validation")).to_contain_text("no frames were dropped")
        assert "dBFS" not in page.locator("#review-audio-words").inner_text()

        # Thumbnails: both cameras decoded at the asked width, and they show the simulated room, not a blank.
        for camera in ("camera_left", "camera_right"):
            img = page.locator(f"#thumb-{camera}")
            wait_for(
                lambda img=img: img.evaluate("i => i.complete && i.naturalWidth") == 320, 10, "a thumbnail"
            )
            image = pixels(img)
            assert image.std() > 10, f"{camera} thumbnail is flat (std {image.std():.1f})"
        # Timeline: the sim's instructions and transcripts as dots; paths and speeds: one colour per part.
        drawn(page, "#review-timeline", CURVES[:2], least=20)
        for canvas in ("#review-top", "#review-side", "#review-speed"):
            drawn(page, canvas)
        drawn(page, "#review-audio", ("#3fb950",), least=200)

        # Moving the cursor fetches the image of that moment: its time follows the cursor.
        page.locator("#review-pos").fill("450")  # 4.5 s
        left = page.locator("#thumb-camera_left")
        wait_for(lambda: abs(float(left.get_attribute("data-t") or -1) - 4.5) < 0.2, 10, "the image at 4.5 s")
        # Play at 1x from 1 s: after ~1.5 s of page time the cursor has moved about that far.
        page.locator("#review-pos").fill("100")
        page.click("#review-play")
        page.wait_for_timeout(1500)
        shot(page, f"page-review-{size}")
        text = page.locator("#review-time").inner_text()
        played = float(text.split(" s")[0])
        assert 1.8 <= played <= 4.0, text  # 1 s + ~1.5 s, with room for a loaded machine's slow frames
        wait_for(
            lambda: float(left.get_attribute("data-t") or -1) > 1.5, 10, "an image fetched while playing"
        )
        page.click("#review-play")  # pause
        # A click on the timeline's middle puts the cursor near the middle of the 6 s.
        box = page.locator("#review-timeline").bounding_box()
        page.locator("#review-timeline").click(position={"x": box["width"] / 2, "y": box["height"] / 2})
        wait_for(
            lambda: 2.0 < float(page.locator("#review-time").inner_text().split(" s")[0]) < 4.0, 5, "a seek"
        )
        assert page.vrcap_errors == [], page.vrcap_errors
        assert serious_violations(page) == []


def job_state(page: Page) -> str | None:
    return page.locator("#follow-card").get_attribute("data-state")


def test_follow_a_conversion_and_a_training_to_the_end(served: ServeProcess) -> None:
    with browser("laptop") as page:
        open_paired(page, served)
        page.click(f"#sessions li[data-session='{SESSION}'] button.convert")
        expect(page.locator("#follow-card")).to_be_visible()
        expect(page.locator("#follow-card")).to_have_attribute("data-state", "succeeded", timeout=60_000)
        expect(page.locator("#job-log")).to_contain_text("180 steps at 30 Hz", timeout=10_000)
        # The dataset picker comes to the newest conversion's output by itself.
        expect(page.locator("#train-dataset")).to_have_value(SESSION, timeout=10_000)

        # 0 steps is refused here and never reaches the server as "the config's full length".
        with served.client() as client:
            before = len(client.get("/api/v1/jobs").json()["jobs"])
            page.fill("#train-steps", "0")
            page.click("#train")
            expect(page.locator("#train-msg")).to_contain_text("1 or more")
            assert len(client.get("/api/v1/jobs").json()["jobs"]) == before
            refused = client.post(
                "/api/v1/jobs/train", json={"config": "tiny", "dataset": SESSION, "max_steps": 0}
            )
            assert refused.status_code == 422

        page.fill("#train-steps", "12")
        page.click("#train")
        expect(page.locator("#train-msg")).to_contain_text("12 steps")
        row = page.locator("#jobs li").first
        expect(row.locator(".job-kind")).to_have_text("train", timeout=10_000)
        expect(row.locator(".job-config")).to_contain_text("config tiny, 12 steps")
        expect(row.locator(".job-input")).to_have_text(f"dataset {SESSION}")
        expect(page.locator("#follow-card")).to_have_attribute("data-state", "succeeded", timeout=120_000)
        expect(page.locator("#job-log")).to_contain_text("trained to step 12", timeout=10_000)
        expect(row.locator(".job-state")).to_have_text("done", timeout=10_000)
        trained = row.get_attribute("data-job")
        assert row.locator(".job-duration").inner_text().endswith(" s")
        # The loss: four modalities and the total as curves, one colour each; validation beside its baselines.
        expect(page.locator("#loss")).to_have_attribute("data-curves", "6")  # 5 training curves + validation
        page.locator("#loss").scroll_into_view_if_needed()
        drawn(page, "#loss", least=30)
        expect(page.locator("#val-label")).to_contain_text("Validation at step 12")
        expect(page.locator("#val-table tr").first).to_contain_text("holding still")
        shot(page, "page-job-laptop")
        assert "--" not in page.locator("#job-log").inner_text().replace("---", "")  # no CLI flags shown
        assert page.vrcap_errors == [], page.vrcap_errors
        assert serious_violations(page) == []

        # A long training followed while it runs (its log grows), then cancelled from its row.
        page.fill("#train-steps", "200")
        page.click("#train")
        expect(page.locator("#follow-card")).to_have_attribute("data-state", "running", timeout=10_000)
        expect(page.locator("#job-log")).to_contain_text("step 5/200", timeout=30_000)
        page.locator("#jobs li").first.locator("button", has_text="Cancel").click()
        expect(page.locator("#follow-card")).to_have_attribute("data-state", "cancelled", timeout=30_000)
        expect(page.locator("#jobs li").first.locator(".job-state")).to_have_text("cancelled", timeout=10_000)

    with browser("phone") as page:  # the finished job read back at a phone's size
        open_paired(page, served)
        page.locator(f"#jobs li[data-job='{trained}'] button", has_text="Follow").click()
        expect(page.locator("#follow-card")).to_have_attribute("data-state", "succeeded", timeout=10_000)
        page.locator("#loss").scroll_into_view_if_needed()
        expect(page.locator("#loss")).to_have_attribute("data-curves", "6")
        drawn(page, "#loss", least=15)
        shot(page, "page-job-phone")
        assert serious_violations(page) == []


@pytest.mark.parametrize("size", list(SIZES))
def test_server_stopped_and_restarted(tmp_path: Path, size: str) -> None:
    server = ServeProcess(tmp_path / "root")
    port = server.port
    try:
        with browser(size) as page:
            open_paired(page, server)
            expect(page.locator("#start")).to_be_enabled()
            server.stop()
            banner = page.locator("#offline-banner")
            expect(banner).to_be_visible(timeout=15_000)
            expect(banner).to_contain_text("cannot be reached")
            expect(page.locator("#start")).to_be_disabled()
            expect(page.locator("#train")).to_be_disabled()
            expect(page.locator("#conn")).to_have_text("offline")
            expect(page.locator("#offline-retry")).to_contain_text("attempt", timeout=10_000)
            shot(page, f"page-offline-{size}")
            assert serious_violations(page) == []
            for bad in ("Failed to fetch", "Authorization", "Bearer", "--", "/api/"):
                assert bad not in page.locator("body").inner_text(), bad
            server = ServeProcess(tmp_path / "root", port=port)
            expect(banner).to_be_hidden(timeout=20_000)
            expect(page.locator("#start")).to_be_enabled()
            expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
            page.click("#refresh")  # the API answers the page again, with the recovered token
            expect(page.locator("#sessions li")).to_have_text("No sessions yet.")
            expect(page.locator("#train-msg")).to_have_text("")
            # What the browser itself logs for the refused connections is not the page's doing.
            errors = [
                e for e in page.vrcap_errors if "ERR_CONNECTION_REFUSED" not in e and "WebSocket" not in e
            ]
            assert errors == [], errors
    finally:
        with contextlib.suppress(Exception):
            server.stop()


def test_a_silent_microphone_reads_silent(served: ServeProcess) -> None:
    with browser("phone") as page:
        open_paired(page, served)
        page.click("#sessions li[data-session='silent-mic'] button.review")
        expect(page.locator("#review-card")).to_have_attribute("data-ready", "1", timeout=20_000)
        expect(page.locator("#review-audio-words")).to_have_text(
            "The microphone was silent for the whole session."
        )
        expect(page.locator("#review-thumbs")).to_have_text("No cameras were recorded.")
        drawn(page, "#review-speed", CURVES[:1])  # the head alone
        expect(page.locator("#review-validation")).to_contain_text("5 frames were dropped")
        # two pauses: the dropped frames' hole, and the pause itself
        expect(page.locator("#review-validation")).to_contain_text("2 pauses")
        # On the timeline: the drop as a red mark, the pauses as orange bands (charts.js colours).
        drawn(page, "#review-timeline", ("#f85149", "#d29922"), least=20)
        # The page's own formatting of the level the server sends (-150.3 dBFS is digital silence).
        words = page.evaluate("[Words.level(-150.3), Words.level(-20.4), Words.level(null)]")
        assert words == ["silent", "-20 dB", "–"]
        sentence = page.evaluate(
            "Words.explain({code: 'x', detail: 'run `vrcap validate --fix` on /srv/vrcap/sessions/a then "
            "POST /api/v1/jobs/replay with Authorization: Bearer abc'})"
        )
        for bad in ("--fix", "/srv/", "POST", "Bearer", "`"):
            assert bad not in sentence, sentence
        with httpx.Client(base_url=served.url) as anon:
            assert anon.get("/page/words.js").status_code == 200
