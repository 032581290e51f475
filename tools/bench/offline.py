"""Offline sim recording: how many times faster than real time `vrcap record --offline` writes a session.

    .venv/bin/python tools/bench/offline.py [--seconds 60] [--dir D]

Runs ``capture.offline.record_offline`` (the code `vrcap record --source sim --offline` runs) for three rigs, in
one run so that they share the machine's load: the default rig (two 640x480 cameras at 30 fps, hands, audio,
tasks and speech), the same without cameras, and the default rig with ``sim.tasks=false`` (the free-running
calibration rig: no tasks, no speech, no text) as the reference that shows what tasks and speech cost. Every
session is validated. Prints recorded seconds per wall second ("x real time") and each rig's time against the
reference's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from capture.config import CaptureConfig, RecordConfig  # noqa: E402
from capture.offline import record_offline  # noqa: E402
from capture.sim import SimConfig  # noqa: E402
from vrcap.validate import validate_session  # noqa: E402
from vrcap.writer import WriterConfig  # noqa: E402


def run(root: Path, name: str, sim: SimConfig, seconds: float) -> float:
    """Wall seconds to write ``seconds`` of the rig offline (fsync on, as a user's run)."""
    config = CaptureConfig(
        record=RecordConfig(duration_s=seconds, offline=True), writer=WriterConfig(), sim=sim
    )
    started = time.perf_counter()
    record_offline(root / name, config, progress=False)
    wall = time.perf_counter() - started
    report = validate_session(root / name)
    if not report.ok:
        raise SystemExit(f"{name}: the session does not validate: {report.errors[0].message}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vrcap-offline-", dir=args.dir))
    try:
        default = SimConfig()
        rigs = {
            "reference: tasks=false": replace(default, tasks=False),
            "default (2 cameras 640x480)": default,
            "no cameras": replace(default, cameras=()),
        }
        walls = {name: run(root, f"s{i}", sim, args.seconds) for i, (name, sim) in enumerate(rigs.items())}
        reference = walls["reference: tasks=false"]
        print(f"{args.seconds:.0f} s of sim data per rig, offline, fsync on")
        for name, wall in walls.items():
            print(
                f"  {name:<28} {wall:6.2f} s wall  {args.seconds / wall:6.1f}x real time  {wall / reference:.2f}x the reference's time"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
