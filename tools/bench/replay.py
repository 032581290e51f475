"""Replay benchmark: conversion speed against its references, Dataset rates, and peak memory by session length.

    .venv/bin/python tools/bench/replay.py [--seconds 60] [--repeat 3] [--window 32] [--sessions 1000]
        [--memory-minutes 1,10,60] [--camera-minutes 1,10] [--json OUT]

Sessions are written offline from the simulator (capture.sim_source.SimPacketGenerator, SessionWriter without
fsync), so neither rendering nor recording is timed:
    (a) poses + hands + controls + 48 kHz audio      (b) the same plus two 640x480 JPEG q90 cameras at 30 fps
Conversion is `replay.convert.convert_one` (validation pass + read + align + log-mel + JPEG decode + shard
write), best of ``--repeat``, after a first conversion that starts the chunk-builder process (its time is
printed apart); for (a) also with ``convert.builder=thread``. References measured in the same run on the
same session: just reading it (SessionReader.packets() with CRC checks, every packet decoded) and, for (b),
a plain cv2.imdecode at full size plus cv2.resize to the target of every frame of both cameras, one thread. Each goal is printed beside them.
Dataset: windows of ``--window`` steps over the (a) shard, pose + hands + controls + audio (mel), batches of 64,
0 and 2 persistent DataLoader workers, steady rate over three epochs after a first; and opening ``--sessions``
small sessions (copies of one 2 s shard under a manifest that lists them all) with the memory it costs.
Memory: each conversion in a fresh process (tools/bench/peak_rss.py): peak RSS (which counts the mapped
session segment, up to 256 MB) and peak anonymous memory (what the converter holds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
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

GOAL_POSES_AUDIO = 400.0  # x real time
GOAL_OVER_READ = 0.4  # conversion speed / just-reading speed, poses + audio
GOAL_CAMERAS = 40.0  # two 640x480 cameras at images.size 64
GOAL_WINDOWS = 5000.0  # windows/s with 2 workers
GOAL_OPEN_S = 2.0  # opening --sessions sessions
GOAL_RSS_MB = {64: 500.0, 224: 1500.0}
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


def read_reference(path: Path) -> None:
    with SessionReader(path) as reader:
        for _ in reader.packets():
            pass


def decode_reference(path: Path, size: int) -> None:
    """Read, then a plain full-size cv2.imdecode + cv2.resize of every frame (one thread)."""
    import cv2

    with SessionReader(path) as reader:
        for packet in reader.packets():
            for name, items in packet["s"].items():
                if name.startswith("camera_"):
                    for s in items:
                        image = cv2.imdecode(np.frombuffer(s["d"], np.uint8), cv2.IMREAD_COLOR)
                        cv2.resize(
                            image,
                            (size * image.shape[1] // image.shape[0], size),
                            interpolation=cv2.INTER_AREA,
                        )


def best_of(repeat: int, fn: Any) -> float:
    return best_of_cpu(repeat, fn)[0]


def _builder_cpu() -> float:
    """CPU seconds of the converter's chunk-builder process so far (replay/chunk_builder.py), 0 without one."""
    import psutil

    from replay import chunk_builder

    process = chunk_builder._PROCESS
    if process is None or not process.alive():
        return 0.0
    times = psutil.Process(process.proc.pid).cpu_times()
    return times.user + times.system


def best_of_cpu(repeat: int, fn: Any) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all threads, plus its builder process). Why both:
    on a shared machine the wall figure says how loaded it was as much as how fast the code is; CPU seconds
    say what the work costs."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_SELF)
        builder = _builder_cpu()
        start = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        spent = _builder_cpu() - builder  # its start, when this run started it, counts too
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime + max(spent, 0.0))
    return min(walls), min(cpus)


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


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


def speed(tmpdir: Path, args: argparse.Namespace, results: dict[str, Any]) -> Path:
    """Conversion against its references; returns the (a) tensor folder for the Dataset figures."""
    runs = (
        ("poses+audio", (), 64),
        ("2 cameras @64", ("left", "right"), 64),
        ("2 cameras @224", ("left", "right"), 224),
    )
    sessions: dict[tuple[str, ...], Path] = {}
    for label, cams, size in runs:
        session = sessions.get(cams) or write_session(tmpdir / f"s-{len(cams)}", args.seconds, cams)
        sessions[cams] = session
        config = ReplayConfig()
        config.images.size = size
        out = tmpdir / f"t-{len(cams)}-{size}"
        (out / "shards").mkdir(parents=True)
        entry: dict[str, Any] = {}

        def convert(
            session: Path = session, out: Path = out, entry: dict[str, Any] = entry, c: Any = config
        ) -> None:
            entry.update(convert_one(str(session), str(out), c.to_dict(), False))

        cold_start = time.perf_counter()
        convert()  # the first conversion of the run starts the builder process (timed apart, below)
        cold = time.perf_counter() - cold_start
        t_convert, cpu_convert = best_of_cpu(args.repeat, convert)
        t_read, cpu_read = best_of_cpu(args.repeat, lambda session=session: read_reference(session))
        write_manifest(out, build_manifest({entry["name"]: entry}, config))
        r = results[label] = {
            "convert_x_realtime": args.seconds / t_convert,
            "read_x_realtime": args.seconds / t_read,
            "convert_speed_over_read": t_read / t_convert,
            "convert_x_realtime_per_cpu_s": args.seconds / cpu_convert,
            "read_x_realtime_per_cpu_s": args.seconds / cpu_read,
            "load_1min": os.getloadavg()[0],
        }
        line = (
            f"{label:15s} convert {r['convert_x_realtime']:7.1f}x real time; just read {r['read_x_realtime']:7.1f}x "
            f"(convert speed = {r['convert_speed_over_read']:.2f}x of reading); per CPU-second: convert "
            f"{r['convert_x_realtime_per_cpu_s']:.0f}x, read {r['read_x_realtime_per_cpu_s']:.0f}x; load "
            f"{r['load_1min']:.1f}"
        )
        from replay.chunk_builder import resolve

        r["builder"] = resolve(config.convert.builder, cameras=bool(cams))
        r["first_conversion_s"] = cold
        line += f"; builder: {r['builder']}, first conversion of the run {cold:.2f} s"
        if not cams:
            thread_config = ReplayConfig()
            thread_config.convert.builder = "thread"
            t_thread = best_of(args.repeat, lambda tc=thread_config: convert(c=tc))
            r["thread_builder_x_realtime"] = args.seconds / t_thread
            line += f"; on a thread instead {r['thread_builder_x_realtime']:.1f}x"
        if cams:
            t_decode = best_of(
                args.repeat, lambda session=session, size=size: decode_reference(session, size)
            )
            r["plain_decode_resize_x_realtime"] = args.seconds / t_decode
            line += f"; plain imdecode+resize {r['plain_decode_resize_x_realtime']:6.1f}x"
            if size == 64:
                line += f"  goal >= {GOAL_CAMERAS:g}x: {verdict(r['convert_x_realtime'] >= GOAL_CAMERAS)}"
            else:
                line += "  (stated figure, no goal)"
        else:
            ok = (
                r["convert_x_realtime"] >= GOAL_POSES_AUDIO and r["convert_speed_over_read"] >= GOAL_OVER_READ
            )
            line += f"  goal >= {GOAL_POSES_AUDIO:g}x and >= {GOAL_OVER_READ:g}x of reading: {verdict(ok)}"
        print(line, flush=True)
    return tmpdir / "t-0-64"


def dataset_rates(out: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    for workers in (0, 2):
        rate, first, n = windows_per_s(out, args.window, workers)
        results[f"windows_per_s_workers_{workers}"] = rate
        results[f"windows_per_s_workers_{workers}_first_epoch"] = first
        goal = f" (goal >= {GOAL_WINDOWS:g}: {verdict(rate >= GOAL_WINDOWS)})" if workers == 2 else ""
        print(
            f"dataset         {rate:9.0f} windows/s with {workers} workers, steady{goal}; first epoch incl. "
            f"start-up {first:.0f}/s  ({n} windows of {args.window} steps: pose+hands+controls+audio.mel, batch 64)",
            flush=True,
        )


OPEN_SCRIPT = """
import json, sys, time
t = time.perf_counter()
from replay.dataset import SessionDataset
imported = time.perf_counter() - t
def anon():
    return int(next(l for l in open('/proc/self/status') if l.startswith('RssAnon')).split()[1]) / 1024
before = anon()
t = time.perf_counter()
ds = SessionDataset(sys.argv[1], window=16, modalities=['pose', 'hands', 'controls', 'audio'])
opened = time.perf_counter() - t
after = anon()
for i in range(0, len(ds), max(1, len(ds) // 2000)):
    ds[i]
print(json.dumps({'open_s': opened, 'anon_mb': after - before, 'windows': len(ds), 'maps': len(ds._handles),
                  'after_reading_mb': anon() - before}))
"""


def many_sessions(tmpdir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Open N small sessions (copies of one 2 s shard): time and memory, against N/10 in the same run."""
    config = ReplayConfig()
    config.split.min_sessions = 1
    base = write_session(tmpdir / "small", 2.0, ())
    one = tmpdir / "one"
    (one / "shards").mkdir(parents=True)
    entry = convert_one(str(base), str(one), config.to_dict(), False)
    for n in (args.sessions // 10, args.sessions):
        out = tmpdir / f"many-{n}"
        (out / "shards").mkdir(parents=True)
        entries = {}
        for i in range(n):
            name = f"s{i:05d}"
            os.link(one / entry["shard"], out / "shards" / f"{name}.safetensors")
            entries[name] = {**entry, "name": name, "shard": f"shards/{name}.safetensors"}
        write_manifest(out, build_manifest(entries, config))
        done = subprocess.run(
            [sys.executable, "-c", OPEN_SCRIPT, str(out)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        r = results[f"open_{n}_sessions"] = json.loads(done.stdout.splitlines()[-1])
        goal = (
            f" (goal < {GOAL_OPEN_S:g} s: {verdict(r['open_s'] < GOAL_OPEN_S)})" if n == args.sessions else ""
        )
        print(
            f"dataset open    {n:5d} sessions in {r['open_s']:.2f} s{goal}; heap +{r['anon_mb']:.1f} MB; after "
            f"reading windows across all of them +{r['after_reading_mb']:.1f} MB with {r['maps']} shards mapped "
            f"(budget 64)",
            flush=True,
        )
        shutil.rmtree(out)


def memory_table(tmpdir: Path, args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows = [(m, (), 64) for m in args.memory_minutes]
    rows += [(m, ("left", "right"), size) for m in args.camera_minutes for size in (64, 224)]
    print(
        "memory          minutes  cameras  images.size  peak RSS MB  peak anonymous MB  convert x real time"
    )
    table = results["memory"] = []
    made: dict[tuple[float, int], Path] = {}
    for minutes, cams, size in rows:
        key = (minutes, len(cams))
        if key not in made:
            for old in list(made.values()):
                shutil.rmtree(old)  # disk: an hour of poses + audio is 660 MB, ten minutes of cameras 2.6 GB
            made.clear()
            made[key] = write_session(tmpdir / f"m-{minutes:g}-{len(cams)}", minutes * 60, cams)
        out = tmpdir / f"mt-{minutes:g}-{len(cams)}-{size}"
        done = subprocess.run(
            [sys.executable, "-m", "tools.bench.peak_rss", str(made[key]), str(out), f"images.size={size}"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        r = json.loads(done.stdout.splitlines()[-1])
        row = {
            "minutes": minutes,
            "cameras": len(cams),
            "size": size,
            **r,
            "x_realtime": minutes * 60 / r["s"],
        }
        table.append(row)
        goal = GOAL_RSS_MB[size]
        print(
            f"                {minutes:7g}  {len(cams):7d}  {size:11d}  {r['peak_rss_mb']:11.0f}  "
            f"{r['peak_anon_mb']:17.0f}  {row['x_realtime']:8.0f}   (goal <= {goal:g} MB: "
            f"{verdict(r['peak_rss_mb'] <= goal)})",
            flush=True,
        )
        shutil.rmtree(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument(
        "--memory-minutes", type=lambda v: [float(x) for x in v.split(",") if x], default=[1, 10, 60]
    )
    parser.add_argument(
        "--camera-minutes", type=lambda v: [float(x) for x in v.split(",") if x], default=[1, 10]
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: speed, dataset, open, memory"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    load = os.getloadavg()[0]
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_at_start": load,
    }
    with tempfile.TemporaryDirectory(
        prefix="vrcap-bench-replay-", dir=ROOT / ".cache" if (ROOT / ".cache").is_dir() else None
    ) as tmp:
        tmpdir = Path(tmp)
        if "speed" not in skip:
            out = speed(tmpdir, args, results)
            if "dataset" not in skip:
                dataset_rates(out, args, results)
        if "open" not in skip:
            many_sessions(tmpdir, args, results)
        if "memory" not in skip:
            memory_table(tmpdir, args, results)
    print(
        f"machine: {results['machine']}, load average {load:.1f} at start, {args.seconds:g} s sessions, "
        f"best of {args.repeat}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
