"""MCAP export read by a second, independent implementation: Node's @mcap/core + protobufjs.

tools/interop/node/read_mcap.mjs decodes every message with the schemas stored in the file and prints it
as JSON; each is compared with the session here. The npm packages come from `.ci/run`
(`npm ci --prefix tools/interop/node`); missing, the test fails in CI and skips elsewhere.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, in_ci, run_vrcap
from tests.interop.conftest import session_samples, wall

NODE_DIR = REPO / "tools" / "interop" / "node"
HINT = "install Node and run: npm ci --prefix tools/interop/node"


def _require_node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@mcap" / "core").is_dir():
        message = f"Node or the @mcap/core packages are missing; {HINT}"
        if in_ci():
            pytest.fail(f"{message} (.ci/run installs them)")
        pytest.skip(message)
    return node


def test_node_reader_decodes_every_message_as_the_session_holds_it(
    interop_session: Path, tmp_path: Path
) -> None:
    node = _require_node()
    out = tmp_path / "cups.mcap"
    done = run_vrcap("export", str(interop_session), "--format", "mcap", "--out", str(out))
    assert done.returncode == 0, done.stderr
    read = subprocess.run([node, str(NODE_DIR / "read_mcap.mjs"), str(out)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert read.returncode == 0, read.stderr
    summary, *lines = [json.loads(line) for line in read.stdout.splitlines()]
    truth = session_samples(interop_session)
    assert set(summary["chunks"]) == {"lz4"} and int(summary["messageCount"]) == len(lines)
    got: dict[str, list[dict]] = {}
    for line in lines:
        got.setdefault(line["topic"].lstrip("/"), []).append(line)
    assert {k: len(v) for k, v in got.items()} == {k: len(v) for k, v in truth.items() if v}
    for name, samples in truth.items():
        for k, (sample, line) in enumerate(zip(samples, got.get(name, []), strict=True)):
            assert (
                int(line["logTime"]) == int(line["publishTime"]) == wall(sample["t"])
                and line["sequence"] == k + 1
            )
            _check(name, sample, line["message"])


def _check(name: str, sample: dict, msg: dict) -> None:
    if name in ("head", "controller_left", "controller_right"):
        (tf,) = msg["transforms"]
        t, r = tf["translation"], tf["rotation"]
        got = np.array([t["x"], t["y"], t["z"], r["x"], r["y"], r["z"], r["w"]], np.float32)
        assert (
            np.array_equal(got, np.frombuffer(sample["d"], np.float32)[:7]) and tf["child_frame_id"] == name
        )
    elif name.startswith("hand_"):
        got = np.array([[p["position"][a] for a in "xyz"] + [p["orientation"][a] for a in "xyzw"]
                        for p in msg["poses"]], np.float32)  # fmt: skip
        assert np.array_equal(got, np.frombuffer(sample["d"], np.float32).reshape(26, 8)[:, :7])
    elif name.startswith("camera_") or name == "audio":
        assert base64.b64decode(msg["data"]) == sample["d"]
    elif name == "annotations":
        assert msg["message"] == sample["d"]["text"]
    elif name.startswith("controls_"):
        fields = ("trigger", "squeeze", "thumbstick_x", "thumbstick_y", "button_a", "button_b", "menu",
                  "thumbstick_click")  # fmt: skip
        assert np.array_equal(
            np.array([msg[f] for f in fields], np.float32), np.frombuffer(sample["d"], np.float32)
        )
    elif name == "eeg":
        assert [msg[c] for c in ("Fz", "Cz", "Pz", "Oz")] == np.frombuffer(sample["d"], np.float32).tolist()
    else:
        raise AssertionError(f"stream {name} has no check")
