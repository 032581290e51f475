"""The companion page in a real browser (Debian's chromium through Playwright): pair, record, annotate, stop.

On a user's machine without chromium this module is skipped with the install hint; in CI (CI=true) it never is.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import in_ci, wait_for
from tests.server.live import ServeProcess
from tests.server.page_rig import ARTIFACTS, CHROMIUM, FLAGS  # FLAGS: FACTS.md's, for a closed network
from vrcap.reader import SessionReader

if not Path(CHROMIUM).exists() and not in_ci():
    pytest.skip(
        f"{CHROMIUM} not found; install it with `sudo apt-get install chromium` (Playwright's own browser download "
        "is not used)",
        allow_module_level=True,
    )

from playwright.sync_api import Page, expect, sync_playwright


@pytest.fixture
def page() -> Iterator[Page]:
    profile = tempfile.mkdtemp(prefix="vrcap-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 1400},
            )
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_pair_record_annotate_stop_in_the_browser(serve: ServeProcess, page: Page) -> None:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(serve.url + "/")
    expect(page.locator("#pair-panel")).to_be_visible()
    page.fill("#token", "wrong-token-wrong-token")
    page.click("#pair")
    expect(page.locator("#pair-msg")).to_contain_text("Pairing failed")
    errors.clear()  # the browser logs the 401 of that attempt; from here on nothing may fail

    page.goto(f"{serve.url}/#token={serve.token}")  # the pairing URL `vrcap serve` prints
    expect(page.locator("#main")).to_be_visible()
    assert "token" not in page.url  # taken out of the address bar
    expect(page.locator("#conn")).to_have_text("live", timeout=10_000)  # the WebSocket is open and paired

    page.fill("#session", "from-the-page")
    page.click("#start")
    expect(page.locator("#stop")).to_be_enabled(timeout=15_000)
    expect(page.locator("#rec-state")).to_contain_text("recording")
    first = int(page.locator("#frames").inner_text())
    # polled from Python: the page's CSP (rightly) forbids the eval that wait_for_function would need
    wait_for(lambda: int(page.locator("#frames").inner_text()) > first + 90, 10, "the frame counter to rise")
    expect(page.locator("#drops")).to_have_text("0")

    page.fill("#note", "now the left hand")
    page.select_option("#note-kind", "instruction")
    page.click("#annotate")
    expect(page.locator("#note-msg")).to_contain_text("added")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server-page-recording.png"), full_page=True)
    page.click("#stop")
    expect(page.locator("#rec-msg")).to_contain_text("saved from-the-page", timeout=30_000)
    expect(page.locator("#sessions li[data-session='from-the-page']")).to_contain_text("complete")
    page.screenshot(path=str(ARTIFACTS / "server-page-stopped.png"), full_page=True)

    # Reloading keeps the pairing (localStorage), without the token in the URL.
    page.goto(serve.url + "/")
    expect(page.locator("#main")).to_be_visible()
    assert errors == [], errors

    with SessionReader(serve.root / "sessions" / "from-the-page") as reader:
        notes = [a["d"] for p in reader.packets() for a in p["s"].get("annotations", [])]
    assert notes == [{"text": "now the left hand", "kind": "instruction", "channel": "external"}]
