"""The recorder in its own process: live stats for every stream, a failed start, the API process killed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers import run_vrcap, wait_for
from tests.server.live import ServeProcess, record
from vrcap.info import session_info
from vrcap.metadata import load_meta

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


def _recorder_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"capture.recorder_process" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_live_stats_count_every_stream_as_on_disk(serve: ServeProcess) -> None:
    with serve.client() as client:
        rec_id = record(client, "every-stream")["id"]
        assert client.post(f"/api/v1/recordings/{rec_id}/annotations", json={"text": "go"}).status_code == 201
        live = wait_for(
            lambda: (s := client.get("/api/v1/recordings/current").json())["stats"]["frames"] >= 90 and s,
            20,
            "90 frames",
        )
        samples = live["stats"]["samples"]
        assert samples["annotations"] == 1
        silent = sorted(name for name, count in samples.items() if name != "annotations" and count == 0)
        assert silent == [], f"live stats report 0 samples for {silent}: {samples}"
        stopped = client.post(f"/api/v1/recordings/{rec_id}/stop").json()
    assert stopped["state"] == "stopped"
    on_disk = {
        s["name"]: s["samples"] for s in session_info(serve.root / "sessions" / "every-stream")["streams"]
    }
    assert stopped["stats"]["samples"] == on_disk  # the final snapshot is exactly what session.json holds


def test_a_failed_start_is_an_error_and_leaves_no_session(serve: ServeProcess) -> None:
    with serve.client() as client:
        body = {"session": "bad-mic", "source": "sim", "audio": "no-such-microphone-xyz"}
        failed = client.post("/api/v1/recordings", json=body)
        assert failed.status_code == 409, failed.text
        assert failed.json()["error"] == "capture-failed"
        assert "no-such-microphone-xyz" in failed.json()["detail"]
        assert not (serve.root / "sessions" / "bad-mic").exists()
        assert client.get("/api/v1/recordings/current").json()["state"] == "failed"
        retry = client.post("/api/v1/recordings", json={**body, "audio": "sim", "duration_s": 0.5})
        assert retry.status_code == 201, retry.text  # the name is free
        client.post(f"/api/v1/recordings/{retry.json()['id']}/stop")


def test_killing_the_api_process_finalizes_the_recording(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path)
    with server.client() as client:
        record(client, "orphaned")
        wait_for(
            lambda: client.get("/api/v1/recordings/current").json()["stats"]["frames"] >= 90, 20, "frames"
        )
    recorders = _recorder_pids()
    assert len(recorders) >= 1
    killed_at = time.monotonic()
    server.kill()  # SIGKILL of the server's process group; the recorder has a session of its own
    path = tmp_path / "sessions" / "orphaned"
    wait_for(lambda: load_meta(path).status == "complete", 20, "the session to be finalized")
    assert time.monotonic() - killed_at < 20
    meta = load_meta(path)
    assert meta.stop["reason"] == "control plane went away"
    assert meta.stats["packets"] >= 90
    assert run_vrcap("validate", str(path)).returncode == 0  # without --fix
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in recorders), 10, "the recorder to exit")


def test_the_recorder_exits_cleanly_while_its_control_pipe_is_still_open(tmp_path: Path) -> None:
    """The API process closes the recorder's stdin only after the result; the recorder must not abort meanwhile.

    Its control thread sits in a read of stdin at exit: a normal interpreter shutdown aborted (SIGABRT, "Fatal
    Python error: _enter_buffered_busy") after every recording, with a core file where core dumps are on.
    """
    import subprocess
    import sys

    from capture.recorder_protocol import MSG_RESULT, OP_START, PROTOCOL_VERSION, decode, encode

    items = ["record.duration_s=0.5", "record.audio=sim", "record.cameras=[]"]
    start = {"op": OP_START, "version": PROTOCOL_VERSION, "path": str(tmp_path / "s"), "items": items}
    with subprocess.Popen(
        [sys.executable, "-m", "capture.recorder_process"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(encode(start))
        proc.stdin.flush()
        kinds = [decode(line).get("type") for line in proc.stdout]  # until the recorder closes its end
        code = proc.wait(30)  # stdin still open, as the API process leaves it
        err = proc.stderr.read().decode(errors="replace")
    assert kinds[-1] == MSG_RESULT
    assert "Fatal Python error" not in err, err[-400:]
    assert code == 0
    assert run_vrcap("validate", str(tmp_path / "s")).returncode == 0
