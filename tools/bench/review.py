"""Review benchmark: what the page's review costs, and whether reviewing disturbs a recording in progress.

    .venv/bin/python tools/bench/review.py [--seconds 60] [--load-seconds 10] [--clients 4]

1. Records ``--seconds`` of the sim offline (default capture config: 90 Hz headset with hands, 48 kHz audio, two
   640x480 cameras at 30 fps) and times the overview (server/review_scan.py) against the plainest full read of the
   same session (``for packet in SessionReader.packets()``) measured in the same run.
2. Times 200 thumbnails at random times (server/review_frames.py, 320 wide) against a full decode + resize +
   encode of the same stored images with OpenCV.
3. Starts `vrcap serve` with that session under its root, records a live sim session for ``--load-seconds``
   twice — once quietly, once while ``--clients`` threads fetch thumbnails and overviews of the other session back
   to back — and prints both recordings' dropped frames and the thumbnail latency seen by the clients.
Goals: overview within 1.5x of a plain read; thumbnail p50 under 20 ms; zero dropped frames under review load.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from server.review_frames import FrameSource  # noqa: E402
from server.review_scan import overview  # noqa: E402
from tests.helpers import run_vrcap  # noqa: E402
from tests.server.live import ServeProcess  # noqa: E402
from vrcap.reader import SessionReader  # noqa: E402

SESSION = "bench-review"


def best_of(fn: Any, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def plain_read(path: Path) -> None:
    with SessionReader(path) as reader:
        for _ in reader.packets():
            pass


def reference_thumbnail(path: Path, camera: str, t_s: float) -> None:
    import cv2

    with SessionReader(path) as reader:
        times = reader.index.times
        i = int(np.searchsorted(times, times[0] + int(t_s * 1e9), side="right")) - 1
        for j in range(i, max(i - 48, -1), -1):
            samples = reader.packet_at(int(reader.index.seqs[j]))["s"].get(camera)
            if samples:
                image = cv2.imdecode(np.frombuffer(samples[-1]["d"], np.uint8), cv2.IMREAD_COLOR)
                small = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
                cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
                return


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000 if values else float("nan")


def live_recording(
    server: ServeProcess, name: str, seconds: float, load: int, span: float
) -> tuple[dict[str, Any], list[float]]:
    stop = threading.Event()
    latencies: list[float] = []

    def reviewer(k: int) -> None:
        rng = random.Random(k)
        with server.client() as client:
            while not stop.is_set():
                t = time.perf_counter()
                if rng.random() < 0.05:
                    client.get(
                        f"/api/v1/sessions/{SESSION}/overview", params={"points": rng.choice([400, 600, 800])}
                    )
                    continue
                cam = rng.choice(["camera_left", "camera_right"])
                r = client.get(
                    f"/api/v1/sessions/{SESSION}/frame", params={"camera": cam, "t": rng.uniform(0, span)}
                )
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)

    with server.client() as client:
        started = client.post("/api/v1/recordings", json={"session": name, "source": "sim", "audio": "sim"})
        assert started.status_code == 201, started.text
        rec = started.json()["id"]
        threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(load)]
        for th in threads:
            th.start()
        time.sleep(seconds)
        stop.set()
        for th in threads:
            th.join()
        result = client.post(f"/api/v1/recordings/{rec}/stop").json()["result"]
    return result, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="vrcap-bench-review-"))
    try:
        sessions = work / "root" / "sessions"
        done = run_vrcap(
            "record", "--session", SESSION, "--source", "sim", "--duration", str(args.seconds), "--offline",
            "--root", str(sessions), timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        path = sessions / SESSION
        size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        t_plain = best_of(lambda: plain_read(path))
        t_over = best_of(lambda: overview(str(path), 600))
        print(f"session: {args.seconds} s, {size:.0f} MB")
        print(f"overview (600 points): {t_over * 1000:.0f} ms; plain read {t_plain * 1000:.0f} ms; "
              f"ratio {t_over / t_plain:.2f} (goal <= 1.5)")  # fmt: skip

        frames = FrameSource()
        rng = random.Random(1)
        moments = [
            (rng.choice(["camera_left", "camera_right"]), rng.uniform(0, args.seconds - 1))
            for _ in range(200)
        ]
        frames.thumbnail(path, 0, "camera_left", 0.0, 320)  # opens the reader: not part of a request's cost
        ours, ref = [], []
        for cam, t_s in moments:
            t = time.perf_counter()
            frames.thumbnail(path, 0, cam, t_s, 320)
            ours.append(time.perf_counter() - t)
        for cam, t_s in moments[:50]:
            t = time.perf_counter()
            reference_thumbnail(path, cam, t_s)
            ref.append(time.perf_counter() - t)
        frames.close()
        print(f"thumbnail 320 px: p50 {pct(ours, 50):.2f} ms, p99 {pct(ours, 99):.2f} ms; full decode reference "
              f"p50 {pct(ref, 50):.2f} ms; ratio {pct(ours, 50) / pct(ref, 50):.2f}")  # fmt: skip

        with ServeProcess(work / "root") as server:
            quiet, _ = live_recording(server, "quiet", args.load_seconds, 0, args.seconds - 1)
            loaded, lat = live_recording(server, "loaded", args.load_seconds, args.clients, args.seconds - 1)
        for label, r in (("quiet", quiet), (f"{args.clients} reviewers", loaded)):
            print(f"live recording, {label}: {r['frames']} frames in {r['duration_s']:.1f} s, "
                  f"{r['dropped_frames']} dropped")  # fmt: skip
        print(f"thumbnails over HTTP during the recording: {len(lat)} in {args.load_seconds:.0f} s, "
              f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms")  # fmt: skip
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
