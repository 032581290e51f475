"""Server benchmark: status latency under 50 concurrent clients while the server records at full rate.

    .venv/bin/python tools/bench/server.py [--seconds 20] [--clients 50] [--dir D] [--json OUT]

Starts `vrcap serve` (a subprocess, as a user would) on a free loopback port with a temporary root, starts a sim
recording with the default capture config (90 Hz headset with hands, 48 kHz audio, two 640x480 cameras at 30 fps,
fsync on), then runs ``--clients`` keep-alive connections that each request GET /api/v1/recordings/current back
to back for ``--seconds`` (or, with ``--rate``, each on a fixed schedule, as the companion page polls). Prints p50/p99/max latency, the request rate, and the recording's drops (frames
skipped by the frame loop plus samples dropped per stream), then checks the session with `vrcap validate`.

The clients are a minimal HTTP/1.1 loop on asyncio streams in this process: httpx's async pool measured about
ten times slower than the server here, so it would have timed itself. Both processes share the machine's cores.
Goals: p99 < 50 ms, zero drops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_P99_MS = 50.0
STATUS_PATH = "/api/v1/recordings/current"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`python -m vrcap serve` on a free port; SIGTERM on exit."""

    def __init__(self, root: Path, token: str, overrides: list[str]) -> None:
        self.port = _free_port()
        self.token = token
        env = dict(os.environ, VRCAP_TOKEN=token)
        self.log = open(root / "serve.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vrcap", "serve", "--root", str(root), "--port", str(self.port), *overrides],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()


async def _request(port: int, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request on its own connection (control calls; the timed ones reuse connections)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    status, payload = await _read_response(reader)
    writer.close()
    if status >= 400:
        raise RuntimeError(f"{method} {path}: {status} {payload.decode(errors='replace')}")
    return json.loads(payload)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return status, await reader.readexactly(length)


async def _client(
    port: int, token: str, until: float, rate_hz: float, latencies: list[float], errors: list[str]
) -> None:
    """Poll the status: back to back (rate 0), or on a fixed schedule of ``rate_hz`` as the page does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {STATUS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    start = time.perf_counter() + random.random() / rate_hz if rate_hz else 0.0  # clients out of phase
    n = 0
    try:
        while time.perf_counter() < until:
            if rate_hz:
                await asyncio.sleep(max(0.0, start + n / rate_hz - time.perf_counter()))
                n += 1
            t0 = time.perf_counter()
            writer.write(request)
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(str(status))
    finally:
        writer.close()


async def _wait_ready(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await _request(port, "", "GET", "/api/v1/health")
            return
        except (OSError, RuntimeError, asyncio.IncompleteReadError):
            await asyncio.sleep(0.1)
    raise RuntimeError("vrcap serve did not start")


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    token = "bench-token-0123456789abcdef"
    server = Server(root, token, args.set)
    try:
        await _wait_ready(server.port)
        body = {"session": "bench", "source": "sim", "audio": "sim"}
        rec = await _request(server.port, token, "POST", "/api/v1/recordings", body)
        await asyncio.sleep(1.0)  # past start-up, as a user's first status poll would be
        latencies: list[float] = []
        errors: list[str] = []
        until = time.perf_counter() + args.seconds
        t0 = time.perf_counter()
        await asyncio.gather(
            *(_client(server.port, token, until, args.rate, latencies, errors) for _ in range(args.clients))
        )
        elapsed = time.perf_counter() - t0
        stopped = await _request(server.port, token, "POST", f"/api/v1/recordings/{rec['id']}/stop")
    finally:
        server.close()
    session = root / "sessions" / "bench"
    check = subprocess.run(
        [sys.executable, "-m", "vrcap", "validate", str(session)], capture_output=True, text=True, cwd=ROOT
    )
    lat_ms = np.array(latencies) * 1e3
    p50, p99 = np.percentile(lat_ms, [50, 99])
    result = stopped["result"]
    drops = {k: v for k, v in (result["drops"] or {}).items() if v}
    total_drops = int(result["dropped_frames"]) + sum(drops.values())
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "clients": args.clients,
        "rate_hz_per_client": args.rate,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(float(p50), 2),
            "p99": round(float(p99), 2),
            "max": round(float(lat_ms.max()), 2),
        },
        "recording": {
            "frames": result["frames"],
            "duration_s": round(result["duration_s"], 2),
            "dropped_frames": result["dropped_frames"],
            "drops": drops,
            "camera_frames": {k: v for k, v in stopped["stats"]["samples"].items() if k.startswith("camera")},
            "validate_exit": check.returncode,
        },
        "goals": {
            "p99 < 50 ms": float(p99) < GOAL_P99_MS,
            "zero drops": total_drops == 0,
            "session valid": check.returncode == 0,
        },
    }


def report(r: dict[str, Any]) -> None:
    lat, rec = r["latency_ms"], r["recording"]
    print(f"$ {r['command']}")
    print(
        f"machine: {r['machine']['cpus']} CPUs, {r['machine']['platform']}, Python {r['machine']['python']}"
    )
    pace = f"each at {r['rate_hz_per_client']:g} Hz" if r["rate_hz_per_client"] else "back to back"
    print(
        f"{r['clients']} clients ({pace}) x {r['seconds']} s: {r['requests']} status requests ({r['requests_per_s']}/s), "
        f"{r['errors']} errors"
    )
    print(f"latency ms: p50 {lat['p50']}  p99 {lat['p99']}  max {lat['max']}")
    print(
        f"recording: {rec['frames']} frames in {rec['duration_s']} s, camera frames {rec['camera_frames']}, "
        f"dropped frames {rec['dropped_frames']}, dropped samples {rec['drops'] or 'none'}, "
        f"vrcap validate exit {rec['validate_exit']}"
    )
    print(f"goal p99 < {GOAL_P99_MS:g} ms: {lat['p99'] / GOAL_P99_MS:.2f}x of the limit")
    for name, ok in r["goals"].items():
        print(f"  {'PASS' if ok else 'MISS'}  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients poll")
    parser.add_argument("--clients", type=int, default=50, help="concurrent keep-alive connections")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests per second per client; 0 = back to back (saturation)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server setting, e.g. requests_per_pass=4",
    )
    parser.add_argument("--dir", type=Path, default=None, help="server root (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="vrcap-bench-server-", dir=args.dir))
    try:
        result = asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
