"""Issue 12 §2, each reproduced on a real `vrcap serve` on loopback: connections, job limits, bounds, links."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import websockets

from server.models import NAME_SCHEMA
from tests.helpers import in_ci, wait_for
from tests.server.live import SMALL_SIM, ServeProcess, record

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

LIMITS = (
    "max_connections=30", "max_connections_per_client=20", "header_timeout_s=1.5", "body_timeout_s=1.5",
    "max_running_jobs=2", "max_nproc=2",
)  # fmt: skip


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("limited"), *LIMITS) as server:
        yield server


def _connect(server: ServeProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server sent before it closed the connection."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _health_from(server: ServeProcess, source: str) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=server.url, transport=transport, timeout=10) as client:
        return client.get("/api/v1/health").status_code


def test_idle_sockets_over_the_per_client_cap_get_503_and_the_rest_408(limited: ServeProcess) -> None:
    socks = [_connect(limited) for _ in range(40)]
    try:
        assert _health_from(limited, "127.0.0.2") == 200  # another client is served meanwhile
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(_answer, socks))
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    assert len(refused) == 20 and len(timed_out) == 20, [a[:20] for a in answers]
    assert b'"error":"too-many-connections"' in refused[0] and b'"error":"request-timeout"' in timed_out[0]
    assert elapsed < 10  # the idle ones were closed by the 1.5 s header timeout, not held open


def test_the_server_wide_cap_counts_every_address(limited: ServeProcess) -> None:
    socks = [_connect(limited, "127.0.0.1") for _ in range(20)] + [
        _connect(limited, "127.0.0.3") for _ in range(20)
    ]
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(_answer, socks))
    finally:
        for sock in socks:
            sock.close()
    assert sum(a.startswith(b"HTTP/1.1 503") for a in answers) == 10  # 40 open against max_connections=30
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) == 30


def test_slow_headers_and_slow_bodies_are_cut_off(limited: ServeProcess) -> None:
    sock = _connect(limited)
    sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    answer = b""
    with sock:
        for _ in range(30):  # a header byte every 0.2 s, for at most 6 s
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.2)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
    assert time.monotonic() - started < 6

    with _connect(limited) as sock:
        head = f"POST /api/v1/recordings HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n"
        sock.sendall(head.encode() + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"se')
        started = time.monotonic()
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:60]
    assert time.monotonic() - started < 6


def test_a_websocket_without_a_token_is_closed_within_a_second(limited: ServeProcess) -> None:
    async def silent() -> tuple[int | None, float]:
        url = f"ws://127.0.0.1:{limited.port}/api/v1/recordings/live"
        async with websockets.connect(url) as ws:
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, time.monotonic() - started

    code, elapsed = asyncio.run(silent())
    assert code == 4401
    assert elapsed < 3  # FIRST_MESSAGE_TIMEOUT_S is 1 s; the rest is slack for a loaded machine


def test_job_limits_hold_under_concurrent_requests(limited: ServeProcess) -> None:
    (limited.root / "datasets" / "fake").mkdir(parents=True, exist_ok=True)
    (limited.root / "datasets" / "fake" / "manifest.json").write_text(
        "{}"
    )  # enough to pass the route's check
    headers = {"Authorization": f"Bearer {limited.token}"}

    async def burst(path: str, body: dict[str, object], n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=limited.url, headers=headers, timeout=60) as client:
            return list(await asyncio.gather(*(client.post(path, json=body) for _ in range(n))))

    with limited.client() as client:
        rec = record(client, "src", duration_s=0.5)
        wait_for(lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "the end")
        replays = asyncio.run(burst("/api/v1/jobs/replay", {"session": "src", "dataset": "one"}, 4))
        assert sorted(r.status_code for r in replays) == [201, 409, 409, 409], [r.text for r in replays]
        assert {r.json()["error"] for r in replays if r.status_code == 409} == {"output-busy"}
        trains = asyncio.run(burst("/api/v1/jobs/train", {"config": "tiny", "dataset": "fake"}, 8))
        codes = sorted(r.status_code for r in trains)
        assert codes == [201] + [409] * 7, [r.text for r in trains]  # the replay holds the other slot
        assert {r.json()["error"] for r in trains if r.status_code == 409} == {"too-many-jobs"}
        for job in client.get("/api/v1/jobs").json()["jobs"]:
            client.post(f"/api/v1/jobs/{job['id']}/cancel")
        too_many = client.post("/api/v1/jobs/train", json={"config": "tiny", "dataset": "fake", "nproc": 3})
        assert too_many.status_code == 422 and too_many.json()["error"] == "bad-nproc"
        assert rec["state"] == "recording"


def test_overrides_are_bounded_and_the_bounds_are_in_the_schema(serve: ServeProcess) -> None:
    with serve.client() as client:
        body = {"session": "huge-reserve", "overrides": {**SMALL_SIM, "writer.reserve_bytes": 1e12}}
        response = client.post("/api/v1/recordings", json=body)
        assert response.status_code == 422, response.text
        assert (
            response.json()["error"] == "out-of-bounds"
            and "writer.reserve_bytes" in response.json()["detail"]
        )
        assert not (serve.root / "sessions" / "huge-reserve").exists()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    described = schema["RecordingStart"]["properties"]["overrides"]["description"]
    assert "writer.reserve_bytes in [0, 67108864]" in described
    assert "model.d_model in [8, 8192]" in schema["TrainJobIn"]["properties"]["overrides"]["description"]
    bounded = schema["RecordingStart"]["properties"]["overrides"]["properties"]["writer.reserve_bytes"]
    assert (bounded["minimum"], bounded["maximum"]) == (0, 64 << 20)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        if in_ci():
            pytest.fail(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root: run as root or with CI=true")


def _fill(path: Path) -> None:
    """Write zeros until the disk is full, to the last block."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left"):
            for size in (1 << 20, 4096, 1):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_a_full_disk_is_507_and_leaves_no_reserve_and_no_empty_log(tmp_path: Path) -> None:
    root = tmp_path / "small-disk"
    _mount_tmpfs(root, "24m")
    try:
        with ServeProcess(root) as server, server.client() as client:
            rec = record(client, "tiny", duration_s=0.3)
            wait_for(lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "end")
            free = shutil.disk_usage(root).free
            body = {"session": "reserve", "overrides": {**SMALL_SIM, "writer.reserve_bytes": int(free * 0.8)}}
            response = client.post("/api/v1/recordings", json=body)
            assert response.status_code == 507 and response.json()["error"] == "disk-full", response.text
            assert not (root / "sessions" / "reserve").exists()
            _fill(root / "filler")
            logs_before = sorted(p.name for p in (root / "jobs").iterdir())
            job = client.post("/api/v1/jobs/replay", json={"session": "tiny"})
            assert job.status_code == 507, job.text
            assert job.json()["error"] == "disk-full" and "free space" in job.json()["fix"]
            assert sorted(p.name for p in (root / "jobs").iterdir()) == logs_before  # no empty log left
            (root / "filler").unlink()
            assert client.get("/api/v1/health").status_code == 200
            assert rec["state"] == "recording"
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_links_are_never_followed(serve: ServeProcess, tmp_path: Path) -> None:
    sessions, datasets = serve.root / "sessions", serve.root / "datasets"
    outside = tmp_path / "outside"
    with serve.client() as client:
        record(client, "real", duration_s=0.3)
        wait_for(lambda: client.get("/api/v1/recordings/current").json()["state"] == "stopped", 20, "the end")
        shutil.copytree(sessions / "real", outside / "evil")
        (sessions / "evil").symlink_to(outside / "evil", target_is_directory=True)
        (sessions / "meta-link").mkdir()
        (sessions / "meta-link" / "session.json").symlink_to(outside / "evil" / "session.json")
        (outside / "data").mkdir()
        (datasets / "escape").symlink_to(outside / "data", target_is_directory=True)

        names = [s["name"] for s in client.get("/api/v1/sessions").json()["sessions"]]
        assert "real" in names and "evil" not in names and "meta-link" not in names
        for name in ("evil", "meta-link"):
            response = client.get(f"/api/v1/sessions/{name}")
            assert response.status_code == 404 and response.json()["error"] == "no-such-session"
            replay = client.post("/api/v1/jobs/replay", json={"session": name, "dataset": f"from-{name}"})
            assert replay.status_code == 404 and replay.json()["error"] == "no-such-session"
        escape = client.post("/api/v1/jobs/replay", json={"session": "real", "dataset": "escape"})
        assert escape.status_code == 403 and escape.json()["error"] == "unsafe-path", escape.text
        assert str(serve.root) not in escape.text
    assert list((outside / "data").iterdir()) == []  # nothing was written outside the root


def test_folders_get_explicit_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        server = ServeProcess(tmp_path / "umask")
    finally:
        os.umask(old)
    with server:
        modes = {
            name: (server.root / name).stat().st_mode & 0o777
            for name in ("sessions", "datasets", "runs", "jobs")
        }
        assert modes == dict.fromkeys(modes, 0o750)
        assert (server.root / ".vrcap").stat().st_mode & 0o777 == 0o700


def test_openapi_states_patterns_and_options_lists_every_method(serve: ServeProcess) -> None:
    with serve.client() as client:
        schema = client.get("/openapi.json").json()
        options = client.options("/api/v1/sessions/anything")
    assert options.status_code == 405 and options.json()["error"] == "method-not-allowed"
    assert options.headers["allow"] == "DELETE, GET"
    props = schema["components"]["schemas"]
    assert props["RecordingStart"]["properties"]["session"]["pattern"] == NAME_SCHEMA["pattern"]
    pattern = re.compile(NAME_SCHEMA["pattern"])
    assert pattern.match("kitchen-01.v2") and not pattern.match("a..b") and not pattern.match(".hidden")
    assert "tiny" in props["TrainJobIn"]["properties"]["config"]["enum"]
    assert "propertyNames" in props["TrainJobIn"]["properties"]["overrides"]
    params = schema["paths"]["/api/v1/sessions/{name}"]["get"]["parameters"]
    assert next(p for p in params if p["name"] == "name")["schema"]["pattern"] == NAME_SCHEMA["pattern"]
    assert json.dumps(schema)  # serializable as served
