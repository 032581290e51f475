"""Export benchmark: each exporter's MB/s and multiple of real time, beside just reading the session, in one run.

    .venv/bin/python tools/bench/export.py [--seconds 60] [--repeat 3] [--formats mcap,xdf,lerobot] [--json OUT]
                                           [--session PATH]   # reuse a session written by an earlier run

The session is the simulator's, written offline (tools/bench/replay.py's ``write_session``: poses, hands,
controls, 48 kHz audio, two 640x480 JPEG q90 cameras at 30 fps), so recording is not timed. Measured, best of
``--repeat`` (LeRobot once per codec: it is minutes, not seconds):
    read     SessionReader.packets() with CRC checks: every packet decoded, no JPEG decoded (the reference)
    copy     the session's files copied in the kernel (shutil.copyfile) and fsynced, as an export's output is:
             the floor of writing those bytes at all, which reading (memory-mapped, JPEG bytes untouched) is not
    mcap     `vrcap export --format mcap` (foxglove-sdk writer, Foxglove protobuf, lz4 chunks, JPEG bytes copied
             as they are); "mcap none" the same with mcap.compression=none, to show what LZ4 costs
    xdf      `vrcap export --format xdf`
    lerobot  `vrcap export --format lerobot` at 30 fps with the shipped settings: AV1 (libsvtav1 crf 10
             preset 8) and H.264 (libx264 ultrafast crf 15), one encoder thread per camera
MB/s is the session's size on disk over the time; x real time is recorded seconds over the time. The peak
of Python allocations (tracemalloc, one extra run each) backs the constant-memory claim: compare --seconds 20
(it does not see the Rust writer's or the encoders' own buffers).
Goals (issue 15): MCAP >= 0.5x the read speed; XDF and LeRobot >= 10x real time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout

from replay.export.config import ExportConfig, LeRobotConfig, McapConfig  # noqa: E402
from replay.export.run import export_sessions  # noqa: E402
from tools.bench.replay import write_session  # noqa: E402
from vrcap.reader import SessionReader  # noqa: E402

GOAL_MCAP_OVER_READ = 0.5
GOAL_X_REALTIME = 10.0


def read_only(session: Path) -> None:
    with SessionReader(session) as reader:
        for _ in reader.packets():
            pass


def copy_only(session: Path, into: Path) -> None:
    into.mkdir()
    for path in sorted(session.iterdir()):
        shutil.copyfile(path, into / path.name)
        with open(into / path.name, "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(into)


def timed(repeat: int, fn: Callable[[int], None]) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest run. CPU is user + system of every thread of this process: on a shared
    machine it moves far less with the load than the wall time does."""
    runs = []
    for i in range(repeat):
        cpu, start = _cpu(), time.perf_counter()
        fn(i)
        runs.append((time.perf_counter() - start, _cpu() - cpu))
    return min(runs)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def peak_mb(fn: Callable[[], None]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--formats", default="mcap,xdf,lerobot", help="comma-separated subset to measure")
    parser.add_argument(
        "--codecs", default="av1,h264,mjpeg", help="LeRobot video codecs to measure (mjpeg: the JPEGs copied)"
    )
    parser.add_argument("--session", type=Path, default=None, help="a session to reuse (written if missing)")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    }
    cache = ROOT / ".cache"
    with tempfile.TemporaryDirectory(
        prefix="vrcap-bench-export-", dir=cache if cache.is_dir() else None
    ) as tmp:
        tmpdir = Path(tmp)
        if args.session is not None and (args.session / "session.json").is_file():
            session = args.session
        else:
            session = write_session(args.session or tmpdir / "session", args.seconds, ("left", "right"))
        size_mb = sum(p.stat().st_size for p in session.glob("packets-*.vrc")) / 1e6
        runs: dict[str, Callable[[int], None]] = {
            "read": lambda i: read_only(session),
            "copy": lambda i: copy_only(session, tmpdir / f"copy-{i}"),
        }
        formats = args.formats.split(",")
        for fmt in (f for f in ("mcap", "xdf") if f in formats):
            runs[fmt] = lambda i, fmt=fmt: _export(session, fmt, tmpdir / f"{fmt}-{i}.{fmt}", ExportConfig())
            if fmt == "mcap":
                plain = ExportConfig(mcap=McapConfig(compression="none"))
                runs["mcap none"] = lambda i, c=plain: _export(session, "mcap", tmpdir / f"none-{i}.mcap", c)
        for codec in args.codecs.split(",") if "lerobot" in formats else ():
            config = ExportConfig(lerobot=LeRobotConfig(codec=codec))
            runs[f"lerobot {codec}"] = lambda i, c=config, codec=codec: _export(
                session, "lerobot", tmpdir / f"lerobot-{codec}-{i}", c
            )
        for name, fn in runs.items():
            repeat = 1 if name.startswith("lerobot") else args.repeat
            seconds, cpu = timed(repeat, fn)
            memory = peak_mb(lambda fn=fn, name=name: fn(100)) if name not in ("read", "copy") else None
            results[name] = {"s": seconds, "cpu_s": cpu, "mb_s": size_mb / seconds,
                             "x_realtime": args.seconds / seconds, "peak_python_mb": memory}  # fmt: skip
        read, copy = results["read"]["s"], results["copy"]["s"]
        for name, r in results.items():
            if name == "machine":
                continue
            r["speed_over_read"], r["speed_over_copy"] = read / r["s"], copy / r["s"]
            goal = ""
            if name.startswith("mcap"):
                ok = r["speed_over_read"] >= GOAL_MCAP_OVER_READ
                goal = f"goal >= {GOAL_MCAP_OVER_READ}x read: {'pass' if ok else 'MISS'}"
            elif name not in ("read", "copy"):
                goal = f"goal >= {GOAL_X_REALTIME:g}x real time: {'pass' if r['x_realtime'] >= GOAL_X_REALTIME else 'MISS'}"
            memory = (
                f"peak Python {r['peak_python_mb']:6.1f} MB" if r["peak_python_mb"] is not None else " " * 21
            )
            print(f"{name:13s} {r['s']:7.2f} s ({r['cpu_s']:6.2f} CPU-s)  {r['mb_s']:7.1f} MB/s  {r['x_realtime']:7.1f}x real time  "
                  f"{r['speed_over_read']:5.2f}x read speed  {r['speed_over_copy']:5.2f}x copy speed  {memory}  {goal}")  # fmt: skip
    print(
        f"machine: {results['machine']}; a {args.seconds:g} s session of {size_mb:.0f} MB (2 cameras 640x480); "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _export(session: Path, fmt: str, out: Path, config: ExportConfig) -> None:
    result = export_sessions([session], fmt, out, config, progress=False)
    if result.failures:
        raise SystemExit(str(result.failures[0]))


if __name__ == "__main__":
    sys.exit(main())
