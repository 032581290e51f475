"""Replay benchmark: conversion speed in multiples of real time, and Dataset windows/s, in one run.

    .venv/bin/python tools/bench/replay.py [--seconds 60] [--repeat 5] [--window 32] [--json OUT]

Sessions are written offline from the simulator (capture.sim_source.SimPacketGenerator, SessionWriter without
fsync), so neither rendering nor recording is timed:
    (a) poses + hands + controls + 48 kHz audio      (b) the same plus two 640x480 JPEG q90 cameras at 30 fps
Conversion is `replay.convert.convert_one` (validation pass + read + align + log-mel + JPEG decode + shard
write), best of ``--repeat``. The reference, measured in the same run on the same session, is just reading it:
SessionReader.packets() with CRC checks, decoding every packet (and, for (b), every JPEG with cv2.imdecode at
full size). The ratio says how much conversion costs over touching every byte once.
Dataset: SessionDataset over the (a) shard, windows of ``--window`` steps with stride 1, pose + hands +
controls + audio (mel), batches of 64 through a DataLoader with 0 and 2 (persistent) workers: the steady rate
over three epochs after a first one, which is reported apart because it pays worker start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout

import numpy as np  # noqa: E402

from capture.sim import SimConfig  # noqa: E402
from capture.sim_source import SimPacketGenerator, sim_clock  # noqa: E402
from replay.config import ReplayConfig  # noqa: E402
from replay.convert import build_manifest, convert_one  # noqa: E402
from replay.manifest import write_manifest  # noqa: E402
from vrcap.reader import SessionReader  # noqa: E402
from vrcap.writer import SessionWriter, WriterConfig  # noqa: E402

GOAL_POSES_AUDIO = 200.0  # x real time
GOAL_CAMERAS = 20.0
GOAL_WINDOWS = 5000.0  # windows/s
T0 = 10**12


def write_session(path: Path, seconds: float, cameras: tuple[str, ...]) -> Path:
    config = SimConfig(cameras=cameras)
    gen = SimPacketGenerator(config, jpeg_quality=90, t0_ns=T0)
    clocks = {
        "headset": sim_clock(T0),
        "audio": {"type": "linear", "segments": [{"from_index": 0, "a_ns": float(T0), "b_ns": 1e9 / 48000}]},
    }
    with SessionWriter.create(
        path, gen.streams, config=WriterConfig(fsync=False), clocks=clocks, start_mono_ns=T0
    ) as w:
        for seq in range(round(seconds * config.headset_rate_hz)):
            w.write_packet(gen.packet(seq))
    return path


def read_reference(path: Path, decode_jpeg: bool) -> None:
    import cv2

    with SessionReader(path) as reader:
        for packet in reader.packets():
            if decode_jpeg:
                for name, items in packet["s"].items():
                    if name.startswith("camera_"):
                        for s in items:
                            cv2.imdecode(np.frombuffer(s["d"], np.uint8), cv2.IMREAD_COLOR)


def best_of(repeat: int, fn: Any) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def windows_per_s(out: Path, window: int, workers: int, epochs: int = 3) -> tuple[float, float, int]:
    """(steady windows/s, first-epoch windows/s including worker start-up, windows per epoch)."""
    import torch

    from replay.dataset import SessionDataset, collate

    ds = SessionDataset(out, window=window, stride=1, modalities=["pose", "hands", "controls", "audio"])
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0
    )
    start = time.perf_counter()
    n = sum(batch["pose"].shape[0] for batch in loader)  # epoch 1 pays worker start-up and page faults
    first = n / (time.perf_counter() - start)
    start = time.perf_counter()
    total = sum(batch["pose"].shape[0] for _ in range(epochs) for batch in loader)
    return total / (time.perf_counter() - start), first, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    config = ReplayConfig()
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    }
    with tempfile.TemporaryDirectory(
        prefix="vrcap-bench-replay-", dir=ROOT / ".cache" if (ROOT / ".cache").is_dir() else None
    ) as tmp:
        tmpdir = Path(tmp)
        for label, cams in (("poses+audio", ()), ("+2 cameras", ("left", "right"))):
            session = write_session(tmpdir / f"s-{len(cams)}", args.seconds, cams)
            out = tmpdir / f"t-{len(cams)}"
            (out / "shards").mkdir(parents=True)
            entry: dict[str, Any] = {}

            def convert(session: Path = session, out: Path = out, entry: dict[str, Any] = entry) -> None:
                entry.update(convert_one(str(session), str(out), config.to_dict(), False))

            t_convert = best_of(args.repeat, convert)
            t_read = best_of(
                args.repeat, lambda session=session, cams=cams: read_reference(session, bool(cams))
            )
            write_manifest(out, build_manifest({entry["name"]: entry}, config))
            results[label] = {
                "convert_x_realtime": args.seconds / t_convert,
                "read_x_realtime": args.seconds / t_read,
                "convert_over_read": t_convert / t_read,
            }
            goal = GOAL_POSES_AUDIO if not cams else GOAL_CAMERAS
            r = results[label]
            verdict = "pass" if r["convert_x_realtime"] >= goal else "MISS"
            print(
                f"{label:12s} convert {r['convert_x_realtime']:7.1f}x real time  (goal >= {goal:g}x: {verdict});  "
                f"just read+decode {r['read_x_realtime']:7.1f}x;  convert / read = {r['convert_over_read']:.2f}"
            )
        out = tmpdir / "t-0"
        for workers in (0, 2):
            rate, first, n = windows_per_s(out, args.window, workers)
            verdict = "pass" if rate >= GOAL_WINDOWS else "MISS"
            results[f"windows_per_s_workers_{workers}"] = rate
            results[f"windows_per_s_workers_{workers}_first_epoch"] = first
            print(
                f"dataset      {rate:9.0f} windows/s with {workers} workers, steady (goal >= {GOAL_WINDOWS:g}: "
                f"{verdict}); first epoch incl. start-up {first:.0f}/s  ({n} windows of {args.window} steps: "
                "pose+hands+controls+audio.mel, batch 64)"
            )
    print(f"machine: {results['machine']}, {args.seconds:g} s sessions, best of {args.repeat}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
