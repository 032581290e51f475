"""A headset for the page's WebXR recorder: Debian's chromium, Meta's `iwer` runtime, scripted motion.

iwer takes over chromium's own ``navigator.xr`` only with ``installRuntime({forceInstall: true})`` (FACTS.md).
The init script below installs it before the page's scripts run and moves the emulated head and right controller
along known functions of page time, evaluated at each XRFrame's own predicted display time in iwer's per-frame
device hook (which runs after the frame is made and before the page reads poses from it), so the poses a frame
gives are exactly the trajectory at the time the frame says.
``trajectory()`` is the same functions in Python, for the checks.

iwer is an npm package: .ci/run installs it into <repo>/.node (``npm install --prefix .node iwer@2.5.0``);
$VRCAP_IWER_DIR may point at another copy. Without it (or chromium) the tests skip with that hint, in CI
they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, in_ci

CHROMIUM = "/usr/bin/chromium"
IWER_VERSION = "2.5.0"
# FACTS.md: quiet flags, software WebGL2 for the XR layer, the fake microphone and autoplay for the AudioContext.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]  # fmt: skip
HEAD_W, HAND_W = 1.0, 1.3  # rad/s of the scripted motions
TRIGGER_PERIOD_S = 0.5  # the right trigger is pressed during the first half of every period


def iwer_bundle() -> Path:
    folder = Path(os.environ.get("VRCAP_IWER_DIR") or REPO / ".node" / "node_modules" / "iwer")
    bundle = folder / "build" / "iwer.js"
    missing = [p for p in (Path(CHROMIUM), bundle) if not p.exists()]
    if missing:
        hint = (
            f"{', '.join(map(str, missing))} not found: `sudo apt-get install chromium` and "
            f"`npm install --prefix .node iwer@{IWER_VERSION}` (what .ci/run does)"
        )
        if in_ci():
            pytest.fail(hint)
        pytest.skip(hint)
    return bundle


MOTION_JS = """
(() => {
  const drift = %(drift)r;  // injected page-clock drift: performance.now() runs (1 + drift) times too fast
  if (drift) { const real = performance.now.bind(performance); performance.now = () => real() * (1 + drift); }
  const device = new IWER.XRDevice(IWER.metaQuest3);
  device.installRuntime({ forceInstall: true });
  window.vrcapTestDevice = device;
  function move(t) {  // t: the frame's predicted display time on the recorder's page clock, s
    const yaw = 0.5 * Math.sin(%(hw)r * t);
    device.position.set(0.3 * Math.sin(%(hw)r * t), 1.6 + 0.05 * Math.sin(2 * %(hw)r * t), -0.2 * Math.cos(%(hw)r * t));
    device.quaternion.set(0, Math.sin(yaw / 2), 0, Math.cos(yaw / 2));
    const c = device.controllers.right;
    if (c) {
      const pitch = 0.3 * Math.sin(t);
      c.position.set(0.25 + 0.1 * Math.sin(%(cw)r * t), 1.3, -0.4 + 0.1 * Math.cos(%(cw)r * t));
      c.quaternion.set(Math.sin(pitch / 2), 0, 0, Math.cos(pitch / 2));
      const pressed = (t %% %(period)r) < %(period)r / 2 ? 1 : 0;
      c.setButtonValueImmediate("trigger", pressed);
    }
  }
  // The device's own per-frame hook runs once the XRFrame exists and before poses are read from it.
  const state = Object.getOwnPropertySymbols(device).map((k) => device[k]).find((v) => v && v.onFrameStart);
  const onFrameStart = state.onFrameStart;
  state.onFrameStart = (frame) => { move((performance.timeOrigin + frame.predictedDisplayTime) / 1000); onFrameStart(frame); };
})();
"""


def motion_script(drift: float = 0.0) -> str:
    return MOTION_JS % {"drift": drift, "hw": HEAD_W, "cw": HAND_W, "period": TRIGGER_PERIOD_S}


def _yaw_quat(angle: np.ndarray, axis: int) -> np.ndarray:
    q = np.zeros((len(angle), 4))
    q[:, axis] = np.sin(angle / 2)
    q[:, 3] = np.cos(angle / 2)
    return q


def trajectory(page_s: np.ndarray) -> dict[str, np.ndarray]:
    """The scripted poses at page times (s): head and right aim (position xyz, quaternion xyzw), trigger."""
    t = np.asarray(page_s, dtype=np.float64)
    w, c = HEAD_W, HAND_W
    head = np.stack([0.3 * np.sin(w * t), 1.6 + 0.05 * np.sin(2 * w * t), -0.2 * np.cos(w * t)], axis=1)
    aim = np.stack([0.25 + 0.1 * np.sin(c * t), np.full_like(t, 1.3), -0.4 + 0.1 * np.cos(c * t)], axis=1)
    return {
        "head_p": head,
        "head_q": _yaw_quat(0.5 * np.sin(w * t), 1),
        "aim_p": aim,
        "aim_q": _yaw_quat(0.3 * np.sin(t), 0),
        "trigger": ((t % TRIGGER_PERIOD_S) < TRIGGER_PERIOD_S / 2).astype(np.float64),
    }


def angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    dot = np.abs(np.sum(q1 * q2, axis=1)) / (np.linalg.norm(q1, axis=1) * np.linalg.norm(q2, axis=1))
    return np.degrees(2 * np.arccos(np.clip(dot, -1.0, 1.0)))


@contextmanager
def headset_browser(
    drift: float = 0.0,
    audio_wav: Path | None = None,
    extra_args: tuple[str, ...] | list[str] = (),
    **context_kw: object,
) -> Iterator[object]:
    """A chromium context whose pages have the emulated Quest 3 moving along ``trajectory``."""
    bundle = iwer_bundle()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="vrcap-webxr-")
    args = [*FLAGS, *extra_args]
    if audio_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio_wav}")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=args,
                viewport={"width": 1000, "height": 1400}, **context_kw,
            )  # fmt: skip
            try:
                context.add_init_script(path=str(bundle))
                context.add_init_script(script=motion_script(drift))
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
