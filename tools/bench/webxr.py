"""WebXR benchmark: a page at 90 Hz with both hands and the microphone, through `vrcap serve`, to disk.

    .venv/bin/python tools/bench/webxr.py [--seconds 20] [--dir D] [--json OUT]

The page is a Python client speaking the page's protocol (docs/WEBXR.md) on loopback: every 1/90 s a frame with
head, both aims and both hands (25 joints each), 50 audio blocks of 960 samples a second, 20 clock exchanges a
second — what a Quest at 90 Hz sends. (The real page in headless chromium with iwer and software rendering makes
only ~20-50 frames a second here, so it cannot load the server at 90 Hz; the tests cover the real page.)

Measured, beside a simulator recording of the same streams through the same server in the same run:
- sustained frames per second stored, and drops (page side: none is allowed to queue; server side: every count
  in session.json, plus frames sent but not stored);
- capture → disk: a tail reader polls the segment file every 2 ms and stamps each head sample when its record is
  complete on disk; latency = that stamp − the sample's host time (mapped from page time);
- server CPU per recorded second: user + system time of the API process and the recorder process over the
  recording (psutil), the page's own CPU not counted.
The sim reference cannot drop its cameras through the API, so it records them at 320×240, 1 fps (2 small JPEGs a second).
Goals: 0 drops at 90 Hz, p99 ≤ 50 ms, server CPU ≤ 1.5× the sim's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.server.live import ServeProcess  # noqa: E402
from vrcap.packets import decode_payload  # noqa: E402
from vrcap.records import RECORD_HEADER, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, RecordKind  # noqa: E402

RATE_HZ = 90.0
PAGE_OFFSET_NS = 1_796_000_000_000_000_000 - time.monotonic_ns()  # the fake page's clock: epoch-like


def page_ms() -> float:
    return (time.monotonic_ns() + PAGE_OFFSET_NS) / 1e6


class TailReader(threading.Thread):
    """Stamps each head sample when its packet record is complete in the segment file (2 ms polls)."""

    def __init__(self, session: Path) -> None:
        super().__init__(daemon=True)
        self.session = session
        self.latencies_ms: list[float] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        segment = self.session / "packets-000000.vrc"
        while not segment.exists() and not self.stop_flag.is_set():
            time.sleep(0.002)
        buf = b""
        with open(segment, "rb") as f:
            f.seek(SEGMENT_HEADER_SIZE)
            while not self.stop_flag.is_set():
                chunk = f.read()
                seen = time.monotonic_ns()
                if not chunk:
                    time.sleep(0.002)
                    continue
                buf += chunk
                while len(buf) >= RECORD_HEADER_SIZE:
                    length, _, kind, flags, _ = RECORD_HEADER.unpack_from(buf, 0)
                    if len(buf) < RECORD_HEADER_SIZE + length:
                        break
                    payload, buf = (
                        buf[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + length],
                        buf[RECORD_HEADER_SIZE + length :],
                    )
                    if kind == RecordKind.PACKET:
                        for sample in decode_payload(flags, payload)["s"].get("head", []):
                            self.latencies_ms.append((seen - sample["t"]) / 1e6)


async def fake_page(url: str, token: str, seconds: float) -> dict[str, int]:
    import websockets

    rng = np.random.default_rng(0)
    hand = rng.normal(0, 0.1, (25, 8)).astype("<f4")
    hand[:, 7] = 0.01
    pose = np.array([0, 1.6, 0, 0, 0, 0, 1] + [np.nan] * 6, "<f4").tobytes()
    audio = (np.sin(np.arange(960) / 48000 * 2 * np.pi * 440) * 3000).astype("<i2").tobytes()
    sent = {"frame": 0, "audio": 0}
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(msgpack.packb({"k": "hello", "v": 1, "token": token, "origin_ms": page_ms()}))
        await ws.recv()

        async def receive() -> None:
            async for raw in ws:
                msg = msgpack.unpackb(raw)
                if msg["k"] == "pong":
                    sync = {"k": "sync", "t1": msg["t1"], "t2": msg["t2"], "t3": msg["t3"], "t4": page_ms()}
                    await ws.send(msgpack.packb(sync))

        receiver = asyncio.create_task(receive())
        for i in range(8):
            await ws.send(msgpack.packb({"k": "ping", "id": i, "t1": page_ms()}))
            await asyncio.sleep(0.015)
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = start + n / RATE_HZ
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            frame = {"k": "frame", "n": n, "t": page_ms(), "head": pose, "head_f": 15, "aim_l": pose, "aim_r": pose,
                     "hand_l": hand.tobytes(), "hand_r": hand.tobytes(), "dropped": 0}  # fmt: skip
            await ws.send(msgpack.packb(frame))
            sent["frame"] += 1
            if n % 9 == 0:  # 10 pings a second... and 20 with the one below
                await ws.send(msgpack.packb({"k": "ping", "id": n, "t1": page_ms()}))
            if n % 9 == 4:
                await ws.send(msgpack.packb({"k": "ping", "id": n, "t1": page_ms()}))
            while sent["audio"] < elapsed * 50:
                block = {"k": "audio", "i": sent["audio"] * 960, "t": page_ms(), "pcm": audio, "dropped": 0}
                await ws.send(msgpack.packb(block))
                sent["audio"] += 1
            n += 1
        receiver.cancel()
    return sent


def cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def record(serve: ServeProcess, body: dict[str, Any], seconds: float, webxr: bool) -> dict[str, Any]:
    client = serve.client()
    api = psutil.Process(serve.proc.pid)
    status = client.post("/api/v1/recordings", json=body).json()
    recorder = [c for c in api.children() if "recorder_process" in " ".join(c.cmdline())]
    processes = [api, *recorder]
    path = serve.root / "sessions" / body["session"]
    tail = TailReader(path)
    tail.start()
    before, t0 = cpu_s(processes), time.monotonic()
    sent: dict[str, int] = {}
    if webxr:
        url = serve.url.replace("http", "ws") + f"/api/v1/recordings/{status['id']}/webxr"
        sent = asyncio.run(fake_page(url, serve.token or "", seconds))
    else:
        time.sleep(seconds)
    time.sleep(0.3)  # the last frames reach the disk
    cpu, wall = cpu_s(processes) - before, time.monotonic() - t0
    result = client.post(f"/api/v1/recordings/{status['id']}/stop").json()
    tail.stop_flag.set()
    tail.join(5)
    meta = json.loads((path / "session.json").read_text())
    lat = np.array(tail.latencies_ms)
    stored = meta["stats"]["samples"].get("head", 0)
    return {
        "source": body["source"], "wall_s": round(wall, 2), "head_stored": stored,
        "frames_per_s": round(stored / seconds, 1),  # over the sending time: the page sends for `seconds`
        "sent": sent, "drops": meta.get("drops") or result["result"]["drops"],
        "engine_dropped_frames": result["result"]["dropped_frames"],
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p99": round(float(np.percentile(lat, 99)), 1),
                       "max": round(float(lat.max()), 1)} if lat.size else {},
        "server_cpu_s": round(cpu, 2), "server_cpu_per_s": round(cpu / wall, 3),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="vrcap-bench-webxr-"))
    shutil.rmtree(root / "sessions", ignore_errors=True)
    overrides = {"writer.fsync": True}
    with ServeProcess(root) as serve:
        sim = record(
            serve,
            {"session": "bench-sim", "source": "sim", "audio": "sim",
             "overrides": {**overrides, "sim.camera_width": 320, "sim.camera_height": 240, "sim.camera_fps": 1}},
            args.seconds, webxr=False,
        )  # fmt: skip
        xr = record(
            serve, {"session": "bench-webxr", "source": "webxr", "audio": "webxr", "overrides": overrides},
            args.seconds, webxr=True,
        )  # fmt: skip
    lost = xr["sent"].get("frame", 0) - xr["head_stored"]
    report = {"seconds": args.seconds, "sim": sim, "webxr": xr, "frames_sent_not_stored": lost,
              "cpu_ratio_webxr_over_sim": round(xr["server_cpu_per_s"] / sim["server_cpu_per_s"], 2)}  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
