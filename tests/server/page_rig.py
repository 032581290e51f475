"""The companion page in Debian's chromium at a phone's and a laptop's size, and what the page tests look at.

Pixels, not only the DOM: ``pixels()`` screenshots one element and decodes it, so a test can count the pixels of
a curve's colour on a canvas. Accessibility: axe-core's ``axe.min.js`` (npm ``axe-core``, installed by .ci/run
into .node/ beside iwer) is evaluated in the page over the DevTools protocol, which the page's CSP does not
govern, and its serious and critical violations are returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.helpers import REPO, in_ci

CHROMIUM = "/usr/bin/chromium"
AXE_VERSION = "4.14.1"
ARTIFACTS = REPO / "test-artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SIZES = {"laptop": {"width": 1280, "height": 720}, "phone": {"width": 412, "height": 915}}


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        hint = f"{CHROMIUM} not found; install it with `sudo apt-get install chromium`"
        if in_ci():
            pytest.fail(hint)
        pytest.skip(hint)


def axe_source() -> str:
    folder = Path(os.environ.get("VRCAP_AXE_DIR") or REPO / ".node" / "node_modules" / "axe-core")
    path = folder / "axe.min.js"
    if not path.is_file():
        hint = f"{path} not found: `npm install --prefix .node axe-core@{AXE_VERSION}` (what .ci/run does)"
        if in_ci():
            pytest.fail(hint)
        pytest.skip(hint)
    return path.read_text()


_shared: dict[str, Any] = {}


def _chromium() -> Any:
    """One chromium for the whole test process (launching it costs seconds); each test gets its own context."""
    if "browser" not in _shared:
        from playwright.sync_api import sync_playwright

        driver = sync_playwright().start()
        _shared["driver"] = driver
        _shared["browser"] = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    return _shared["browser"]


def close_chromium() -> None:
    if "browser" in _shared:
        _shared.pop("browser").close()
        _shared.pop("driver").stop()


@contextmanager
def browser(size: str) -> Iterator[Any]:
    """A fresh page (its own profile: no storage) at one of SIZES; errors collect in ``page.vrcap_errors``."""
    need_chromium()
    context = _chromium().new_context(viewport=SIZES[size])
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.vrcap_errors = errors
        yield page
    finally:
        context.close()


def pixels(locator: Any) -> np.ndarray:
    """The element as shown: an (H, W, 3) BGR array decoded from its screenshot."""
    png = locator.screenshot(type="png")
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the screenshot did not decode"
    return image


def count_colour(image: np.ndarray, hex_rgb: str, tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` (per channel) of a CSS colour like ``#58a6ff``."""
    r, g, b = (int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5))
    diff = np.abs(image.astype(np.int16) - np.array([b, g, r], dtype=np.int16))
    return int((diff.max(axis=2) <= tolerance).sum())


def serious_violations(page: Any) -> list[dict[str, Any]]:
    page.evaluate(axe_source())
    result = page.evaluate(
        "async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))"
    )
    violations = json.loads(result)["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
