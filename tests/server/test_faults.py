"""Issue 12 §3 on a real `vrcap serve`: pre-spawn checks, busy sessions, WebSocket refusals, messages, start-up."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from server.jobstore import RUNNING, JobRecord, JobStore, utc_now
from tests.helpers import REPO, wait_for
from tests.server.live import TOKEN, ServeProcess, free_port, record


def _fake_dataset(server: ServeProcess) -> None:
    """A manifest is all the train route checks before its config checks (nothing here gets to spawn)."""
    (server.root / "datasets" / "ds").mkdir(parents=True, exist_ok=True)
    (server.root / "datasets" / "ds" / "manifest.json").write_text("{}")


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        ({"nproc": 2}, "bad-nproc", "not a multiple of nproc"),  # tiny has optim.grad_accum 1
        ({"nproc": 64}, "bad-nproc", "outside [1, "),
        (
            {"max_steps": 5, "overrides": {"max_steps": 7}},
            "bad-override",
            "hidden by the request's max_steps",
        ),
        ({"overrides": {"data.num_workers": 64}}, "out-of-bounds", "data.num_workers = 64"),
        ({"overrides": {"threads": 100000}}, "out-of-bounds", "threads = 100000"),
        ({"overrides": {"model.d_model": 1048576}}, "out-of-bounds", "model.d_model = 1048576"),
    ],
)
def test_train_requests_are_checked_before_spawning(
    serve: ServeProcess, extra: dict[str, object], code: str, words: str
) -> None:
    _fake_dataset(serve)
    with serve.client() as client:
        jobs_before = len(client.get("/api/v1/jobs").json()["jobs"])
        response = client.post("/api/v1/jobs/train", json={"config": "tiny", "dataset": "ds", **extra})
        assert response.status_code == 422, response.text
        assert response.json()["error"] == code and words in response.json()["detail"]
        assert len(client.get("/api/v1/jobs").json()["jobs"]) == jobs_before  # nothing was started


def test_deleting_a_session_a_job_reads_is_409(serve: ServeProcess) -> None:
    with serve.client() as client:
        record(client, "busy", duration_s=0.3)
        wait_for(lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "the end")
        job = client.post("/api/v1/jobs/replay", json={"session": "busy"})
        assert job.status_code == 201, job.text
        refused = client.delete("/api/v1/sessions/busy", params={"confirm": "busy"})
        assert refused.status_code == 409 and refused.json()["error"] == "session-in-use", refused.text
        assert job.json()["id"] in refused.json()["detail"]
        assert (serve.root / "sessions" / "busy" / "session.json").is_file()
        wait_for(
            lambda: client.get(f"/api/v1/jobs/{job.json()['id']}").json()["state"] != "running",
            120,
            "the replay",
        )
        assert client.delete("/api/v1/sessions/busy", params={"confirm": "busy"}).status_code == 200


def _ws_close(url: str, first: str | None = None, **kw: object) -> int | None:
    async def attempt() -> int | None:
        async with websockets.connect(url, **kw) as ws:  # type: ignore[arg-type]
            with pytest.raises(websockets.ConnectionClosed):  # sending may already find it closed
                if first is not None:
                    await ws.send(first)
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code

    return asyncio.run(attempt())


def test_websocket_refusals_use_their_close_codes(serve: ServeProcess) -> None:
    url = f"ws://127.0.0.1:{serve.port}/api/v1/recordings/live"
    assert _ws_close(url, '{"token": "\\ud800"}') == 4401  # a lone surrogate: wrong, not a crash
    assert _ws_close(url, json.dumps({"token": TOKEN}), origin="http://evil.example") == 1008
    with socket.create_connection(
        ("127.0.0.1", serve.port), timeout=10
    ) as sock:  # Host cannot be set otherwise
        sock.sendall(
            b"GET /api/v1/recordings/live HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, frame = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head  # a WebSocket, then the documented close, not HTTP 403
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1008
    assert "Traceback" not in serve.log()


def test_an_allowed_origin_gets_live_stats(serve: ServeProcess) -> None:
    async def first_snapshot() -> dict[str, object]:
        url = f"ws://127.0.0.1:{serve.port}/api/v1/recordings/live"
        async with websockets.connect(url, origin=f"http://127.0.0.1:{serve.port}") as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"token": TOKEN}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert "state" in asyncio.run(first_snapshot())


def test_errors_name_paths_relative_to_the_root(serve: ServeProcess) -> None:
    with serve.client() as client:
        record(client, "twice", duration_s=0.3)
        wait_for(lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "the end")
        again = client.post("/api/v1/recordings", json={"session": "twice"})
    assert again.status_code == 409 and again.json()["error"] == "session-exists"
    assert again.json()["detail"] == "session sessions/twice already exists"
    assert str(serve.root) not in again.text


def test_a_port_in_use_is_the_first_and_only_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "vrcap", "serve", "--root", str(tmp_path), "--port", str(port)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"vrcap serve: error: port {port} is in use; use --port N (another vrcap serve may be running)"
    ]


def test_startup_warnings_are_logged_once(tmp_path: Path) -> None:
    (tmp_path / ".vrcap").mkdir(mode=0o700)
    with JobStore(tmp_path / ".vrcap" / "jobs.sqlite3") as store:  # a job a dead server left "running"
        store.add(
            JobRecord(
                id="job-orphan",
                kind="replay",
                state=RUNNING,
                created_utc=utc_now(),
                argv=["x"],
                params={},
                output="datasets/x",
                log="jobs/job-orphan.log",
            )
        )
    with ServeProcess(tmp_path, port=free_port()) as server:
        log = server.log()
    assert log.count("marked 1 jobs failed") == 1, log
    assert log.count("Application startup complete") == 1, log
    assert os.path.exists(tmp_path / ".vrcap" / "jobs.sqlite3")
