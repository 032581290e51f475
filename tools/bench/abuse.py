"""Abuse benchmark: frames dropped and /health latency while a real `vrcap serve` is hammered, next to a quiet run.

    .venv/bin/python tools/bench/abuse.py [--seconds 20] [--scale 1.0] [--json OUT]

Starts `vrcap serve` on a free loopback port with a temporary root holding a 2.4 MB job log, a 5 MB
metrics.jsonl and 200 sessions; records a sim session (90 Hz headset with hands, 48 kHz audio, two 640x480
cameras) twice: once quiet (the control) and once under the mix of issue 12, each for ``--seconds``:
- 2 clients tailing the big log (``tail=10000``) and 2 polling the metrics (``limit=2000``), back to back;
- 10 clients listing sessions and 3 reading a session's details in a loop;
- 50 authenticated WebSocket clients (live stats) and 300 token-less ones reconnecting;
- 1,000 idle sockets and a client sending its headers a byte every 0.2 s.
``/health`` is probed every 50 ms from another loopback address (127.0.0.2: a different client, as a headset
or a page would be). Prints dropped frames and /health p50/p99/max for both runs. Goals: 0 drops, p99 < 50 ms.
``--scale`` multiplies the client counts (the test runs a smaller mix).

The attackers come from 127.0.0.1 (idle sockets, slow sender, token-less WebSockets), 127.0.0.3 (HTTP) and
127.0.0.4 (authenticated WebSockets): the per-client caps and the handshake budget apply to each address.
They run in a process of their own, at nice 10 in an autogroup of its own at nice 10 (``--client-nice``):
clients on other machines cost the server no CPU. The /health probe and the recording's control stay in this
process, at the caller's priority. Also printed: the API process's CPU time in each run and the requests the
attackers got answered (their rate is bounded by their own low priority: read it next to the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.server.live import ServeProcess  # noqa: E402

GOAL_P99_MS = 50.0
SIM = {"writer.fsync": True}
SMALL = {"sim.camera_width": 320, "sim.camera_height": 240, "writer.fsync": False}


@dataclass
class Mix:
    """How many of each attacker; ``scaled`` keeps at least one of each."""

    log_tailers: int = 2
    metrics_pollers: int = 2
    listers: int = 10
    detail_readers: int = 3
    ws_clients: int = 50
    tokenless_ws: int = 300
    idle_sockets: int = 1000
    slow_senders: int = 1
    sessions: int = 200

    def scaled(self, factor: float) -> Mix:
        return Mix(**{k: max(1, round(v * factor)) for k, v in self.__dict__.items()})


@dataclass
class Outcome:
    health_ms: list[float] = field(default_factory=list)
    slow_at_s: list[float] = field(default_factory=list)  # when /health took longer than the goal
    health_failures: int = 0
    requests: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.requests[what] = self.requests.get(what, 0) + 1


def prepare(server: ServeProcess, sessions: int) -> dict[str, str]:
    """A big job log, a big metrics file and ``sessions`` session folders; returns the ids to hit."""
    with server.client() as client:
        body = {"session": "seed", "source": "sim", "audio": "sim", "duration_s": 0.5,
                "overrides": {"sim.camera_width": 320, "sim.camera_height": 240, "writer.fsync": False}}  # fmt: skip
        assert client.post("/api/v1/recordings", json=body).status_code == 201
        deadline = time.monotonic() + 30
        while client.get("/api/v1/recordings/current").json()["state"] != "stopped":
            assert time.monotonic() < deadline, "the seed recording did not end"
            time.sleep(0.1)
        replay = client.post("/api/v1/jobs/replay", json={"session": "seed"}).json()
        (server.root / "datasets" / "big").mkdir(exist_ok=True)
        (server.root / "datasets" / "big" / "manifest.json").write_text("{}")
        train = client.post("/api/v1/jobs/train", json={"config": "tiny", "dataset": "big"}).json()
        for job in (replay, train):
            while client.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "running":
                time.sleep(0.2)
    with open(server.root / "jobs" / f"{replay['id']}.log", "ab") as log:  # 2.4 MB of progress lines
        log.write(
            b"".join(
                b"step %06d loss 0.%06d some progress text to fill the line\n" % (i, i) for i in range(40_000)
            )
        )
    runs = server.root / train["output"]
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / "metrics.jsonl", "w") as metrics:  # ~5 MB
        for step in range(60_000):
            metrics.write(
                json.dumps({"step": step, "loss": 1 / (step + 1), "lr": 3e-4, "tokens_s": 1234.5}) + "\n"
            )
    seed = server.root / "sessions" / "seed"
    for i in range(sessions):
        copy = server.root / "sessions" / f"copy-{i:03d}"
        copy.mkdir(exist_ok=True)
        shutil.copy2(seed / "session.json", copy / "session.json")
    return {"log_job": replay["id"], "train_job": train["id"], "session": "seed"}


async def _loop_get(client: httpx.AsyncClient, path: str, until: float, out: Outcome, what: str) -> None:
    while time.monotonic() < until:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(path)
            out.count(what)


async def _ws_client(url: str, token: str | None, source: str, until: float, out: Outcome) -> None:
    """Connect (with the token, if any), read snapshots; reconnect 50 ms after any close or refusal.

    The token goes in the query (also accepted): a first message late by more than 1 s (this process starved
    at its low priority) would be closed 4401 and count as a refused client.
    """
    import websockets
    from websockets.exceptions import InvalidStatus

    target = url if token is None else f"{url}?token={token}"
    while time.monotonic() < until:
        try:
            async with websockets.connect(
                target, open_timeout=5, close_timeout=1, local_addr=(source, 0)
            ) as ws:
                while time.monotonic() < until:
                    await asyncio.wait_for(ws.recv(), max(0.1, until - time.monotonic()))
                    out.count("ws snapshot" if token else "ws unexpected")
        except InvalidStatus as exc:  # refused before the upgrade: 429 (handshake budget), 503 (connections)
            out.count(f"ws {exc.response.status_code}" + ("" if token is None else " (with token)"))
            await asyncio.sleep(0.05)
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
            out.count("ws closed" if token is None else "ws dropped")
            await asyncio.sleep(0.05)


async def _idle_sockets(port: int, n: int, until: float) -> None:
    writers = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    for writer in writers:
        writer.close()


async def _slow_sender(port: int, until: float) -> None:
    while time.monotonic() < until:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /api/v1/health HTTP/1.1\r\n")
            while time.monotonic() < until and not writer.is_closing():
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.2)
            writer.close()


async def _probe_health(port: int, until: float, out: Outcome) -> None:
    """GET /health every 50 ms on one keep-alive connection from 127.0.0.2, as a headset or the page would.

    A minimal HTTP/1.1 client (one request, read the head and the Content-Length body): httpx's async client
    costs milliseconds of its own per request, which would be counted as the server's latency.
    """
    request = f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    reader = writer = None
    start = time.monotonic()
    while time.monotonic() < until:
        t0 = time.perf_counter()
        ok = False
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            assert reader is not None
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 5)
            ok = head.startswith(b"HTTP/1.1 200")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
            if writer is not None:
                writer.close()
            reader = writer = None
        if ok:
            ms = (time.perf_counter() - t0) * 1e3
            out.health_ms.append(ms)
            if ms > GOAL_P99_MS:
                out.slow_at_s.append(round(time.monotonic() - start, 2))
        else:
            out.health_failures += 1
        await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def attackers(
    url: str, port: int, token: str, ids: dict[str, str], mix: Mix, seconds: float
) -> Outcome:
    """The mix for ``seconds``, run in the attackers' process (``--attackers``)."""
    out = Outcome()
    until = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3", limits=limits)
    client = httpx.AsyncClient(base_url=url, headers=headers, transport=transport, timeout=10)
    gets = [
        (mix.log_tailers, f"/api/v1/jobs/{ids['log_job']}/log?tail=10000", "log"),
        (mix.metrics_pollers, f"/api/v1/jobs/{ids['train_job']}/metrics?limit=2000", "metrics"),
        (mix.listers, "/api/v1/sessions", "sessions"),
        (mix.detail_readers, f"/api/v1/sessions/{ids['session']}", "detail"),
    ]
    tasks = []
    for count, path, what in gets:
        tasks += [asyncio.create_task(_loop_get(client, path, until, out, what)) for _ in range(count)]
    ws_url = f"ws://127.0.0.1:{port}/api/v1/recordings/live"
    tasks += [
        asyncio.create_task(_ws_client(ws_url, token, "127.0.0.4", until, out)) for _ in range(mix.ws_clients)
    ]
    tasks += [
        asyncio.create_task(_ws_client(ws_url, None, "127.0.0.1", until, out))
        for _ in range(mix.tokenless_ws)
    ]
    tasks.append(asyncio.create_task(_idle_sockets(port, mix.idle_sockets, until)))
    tasks += [asyncio.create_task(_slow_sender(port, until)) for _ in range(mix.slow_senders)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
    finally:
        await client.aclose()
    return out


def attackers_main(spec: str) -> int:
    """``--attackers JSON``: lower this process's priority, say ``ready``, attack, print the counts as JSON."""
    job = json.loads(spec)
    lowered = lower_own_priority(int(job["nice"]))
    print(json.dumps({"ready": lowered}), flush=True)
    sys.stdin.readline()  # "go"
    mix = Mix(**job["mix"])
    out = asyncio.run(
        attackers(job["url"], job["port"], job["token"], job["ids"], mix, float(job["seconds"]))
    )
    print(json.dumps(out.requests), flush=True)
    return 0


def spawn_attackers(server: ServeProcess, ids: dict[str, str], mix: Mix, seconds: float, nice: int
                    ) -> tuple[subprocess.Popen[str], str]:  # fmt: skip
    """The attackers' process, started in a session (an autogroup) of its own, waiting for "go"."""
    job = {"url": server.url, "port": server.port, "token": server.token, "ids": ids, "mix": mix.__dict__,
           "seconds": seconds, "nice": nice}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, __file__, "--attackers", json.dumps(job)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline() or "{}")
    assert "ready" in ready, "the attackers' process did not start"
    return proc, str(ready["ready"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), for the API process's cost in a run."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorded_run(server: ServeProcess, name: str, ids: dict[str, str], mix: Mix | None, seconds: float,
                 overrides: dict[str, Any], nice: int) -> dict[str, Any]:  # fmt: skip
    """Record for ``seconds`` while /health is probed from this process and, unless ``mix`` is None (the quiet
    control), the attackers' process attacks; the recording is stopped as the attack ends. The probe keeps this
    process's priority, as a headset or the page on another machine would."""
    out = Outcome()
    proc, lowered = spawn_attackers(server, ids, mix, seconds, nice) if mix is not None else (None, "")
    try:
        # The control comes from the probe's address (127.0.0.2), as the user's own page would: 127.0.0.1 is the
        # attackers', whose 1,000 idle sockets fill that address's connection cap (a stop from there gets 503).
        with server.client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as client:
            body = {"session": name, "source": "sim", "audio": "sim", "overrides": overrides}
            started = client.post("/api/v1/recordings", json=body)
            assert started.status_code == 201, started.text
            rec_id = started.json()["id"]
            cpu0 = cpu_seconds(server.proc.pid)
            if proc is not None:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            asyncio.run(_probe_health(server.port, time.monotonic() + seconds, out))
            response = client.post(f"/api/v1/recordings/{rec_id}/stop", timeout=60)
            assert response.status_code == 200, f"stop answered {response.status_code}: {response.text}"
            stopped = response.json()
            api_cpu = cpu_seconds(server.proc.pid) - cpu0
    finally:
        if proc is not None:
            counts, _ = proc.communicate(timeout=seconds + 60)
            out.requests = json.loads(counts.strip().splitlines()[-1]) if counts.strip() else {}
    lat = np.array(out.health_ms) if out.health_ms else np.array([float("nan")])
    return {
        "frames": stopped["result"]["frames"], "dropped_frames": stopped["result"]["dropped_frames"],
        "drops": stopped["result"]["drops"], "health_ok": len(out.health_ms), "health_failures": out.health_failures,
        "health_p50_ms": float(np.percentile(lat, 50)), "health_p99_ms": float(np.percentile(lat, 99)),
        "health_max_ms": float(lat.max()), "requests": out.requests, "clients": lowered,
        "api_cpu_s": api_cpu, "health_slow_at_s": out.slow_at_s,
    }  # fmt: skip


def lower_own_priority(nice: int) -> str:
    """The clients' process at ``nice``, its autogroup too; what was done, in words for the report.

    With autogrouping (Linux's default on desktops) a nice value ranks threads only within their session's
    group, and groups share the CPU by the group's value: clients at nice 19 in a group at 0 still got as much
    CPU as the server's group. So this process moves into a session of its own (the caller's terminal or pytest
    keeps its priority) and lowers that group's value.
    """
    os.nice(nice)
    if os.getsid(0) != os.getpid():  # spawn_attackers starts it in a session of its own; else leave the group
        return f"nice {nice} (its autogroup is the caller's, left alone)"
    try:
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except OSError:
        return f"nice {nice} (no autogroup)"
    return f"nice {nice}, in an autogroup of their own at nice {nice}"


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--attackers":
        return attackers_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every client count")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--client-nice", type=int, default=10,
        help="niceness of the attackers' process (and of its autogroup): clients on other machines cost the "
        "server no CPU; here they share its cores, so they get less (10: about a tenth of a nice-0 group's share; "
        "19 starved them on a loaded machine, 0 = compete equally)",
    )  # fmt: skip
    ap.add_argument("--no-control", action="store_true", help="skip the quiet control run (the test)")
    ap.add_argument("--small", action="store_true", help="320x240 sim cameras, no fsync: a lighter recording")
    ap.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="server settings, e.g. api_nice=0")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrcap-abuse-"))
    mix = Mix().scaled(args.scale)
    try:
        with ServeProcess(
            root, *args.settings, token=os.environ.get("VRCAP_TOKEN") or "abuse-bench-token-0123456789"
        ) as server:
            ids = prepare(server, mix.sessions)
            sim = SMALL if args.small else SIM
            quiet = (None if args.no_control
                     else recorded_run(server, "quiet", ids, None, args.seconds, sim, args.client_nice))  # fmt: skip
            loud = recorded_run(server, "abused", ids, mix, args.seconds, sim, args.client_nice)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"command: {' '.join(sys.argv)}  ({os.cpu_count()} cores, load average {load:.1f} at the start)")
    print(f"mix: {mix}; attackers at {loud['clients']}; load average {os.getloadavg()[0]:.1f} at the end")
    for name, run in (("quiet control", quiet), ("under the mix", loud)):
        if run is None:
            continue
        print(
            f"{name:14s} frames {run['frames']}, dropped {run['dropped_frames']}, drops {run['drops'] or 'none'}; "
            f"/health {run['health_ok']} ok, {run['health_failures']} failed, p50 {run['health_p50_ms']:.1f} ms, "
            f"p99 {run['health_p99_ms']:.1f} ms, max {run['health_max_ms']:.1f} ms; "
            f"API process CPU {run['api_cpu_s']:.1f} s"
        )
    print(f"requests served under the mix: {loud['requests']}")
    ok = loud["dropped_frames"] == 0 and not loud["drops"] and loud["health_p99_ms"] < GOAL_P99_MS
    print(f"goal (0 drops, /health p99 < {GOAL_P99_MS:.0f} ms): {'PASS' if ok else 'MISS'}")
    if args.json:
        args.json.write_text(json.dumps({"quiet": quiet, "abused": loud, "mix": mix.__dict__}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
