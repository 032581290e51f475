"""The engine as the server will drive it: repeated start/stop, a full disk, the drop policy, live stats."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from capture.config import CaptureConfig, RecordConfig
from capture.engine import CaptureEngine, LiveStats
from capture.session import make_engine
from capture.sim import SimConfig
from tests.helpers import in_ci, run_vrcap, wait_for
from vrcap.errors import CaptureError, WriterError
from vrcap.metadata import load_meta
from vrcap.validate import validate_session
from vrcap.writer import WriterConfig

VRCAP_RECORD = [str(Path(sys.executable).parent / "vrcap"), "record"]

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


def _engine(path: Path, duration: float, **writer: object) -> CaptureEngine:
    config = CaptureConfig(
        record=RecordConfig(duration_s=duration),
        writer=WriterConfig(**{"fsync": False, **writer}),  # type: ignore[arg-type]
        sim=SimConfig(camera_width=320, camera_height=240),
    )
    return make_engine(path, config)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_recordings_in_a_row_leave_nothing_open(tmp_path: Path) -> None:
    asyncio.run(_engine(tmp_path / "warm", 0.3).run())
    threads, fds = set(threading.enumerate()), _open_fds()
    for i in range(3):
        result = asyncio.run(_engine(tmp_path / f"r{i}", 0.5).run())
        assert result.frames >= 40
        assert validate_session(tmp_path / f"r{i}").ok
    leftover = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert leftover == []
    assert _open_fds() == fds


def test_live_stats_stream_and_annotation_after_stop(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "live", 1.0)
    seen: list[LiveStats] = []

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        async for stats in engine.live(0.1):
            seen.append(LiveStats(**stats.to_dict()))
        await task

    asyncio.run(main())
    recording = [s for s in seen if s.state == "recording"]
    assert len(recording) >= 6  # ~5 a second at 0.1 s interval over 1 s, allowing start-up
    frames = [s.frames for s in recording]
    assert frames == sorted(frames) and frames[-1] >= 80
    assert seen[-1].state == "stopped"
    assert recording[-1].samples["camera_left"] >= 25 and recording[-1].bytes_written > 0
    assert "headset" not in recording[-1].clocks and "audio" in recording[-1].clocks
    with pytest.raises(CaptureError, match="not running"):
        engine.annotate("too late")


def test_live_sample_counts_cover_every_stream_and_match_the_session(tmp_path: Path) -> None:
    """Polled streams (head, controllers, hands) and annotations count too, not only pushed ones."""
    engine = _engine(tmp_path / "counts", 1.0)

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        while engine.stats.state != "recording":
            await asyncio.sleep(0.01)
        engine.annotate("one")
        engine.annotate("two", kind="instruction", channel="internal")
        await task

    asyncio.run(main())
    samples = engine.stats.to_dict()["samples"]
    assert samples["annotations"] == 2
    assert [name for name, count in samples.items() if count == 0] == []
    assert samples == load_meta(tmp_path / "counts").stats["samples"]


def test_camera_frames_are_dropped_first_and_counted(tmp_path: Path) -> None:
    """With the writer's soft limit at zero every camera frame is shed; poses and audio all arrive."""
    engine = _engine(tmp_path / "shed", 1.0)

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        while engine._writer_thread is None:
            await asyncio.sleep(0.001)
        engine._writer_thread.soft_limit = -1
        await task

    asyncio.run(main())
    meta = load_meta(tmp_path / "shed")
    drops = meta.stats["drops"]
    assert drops.get("camera_left", 0) >= 25 and drops.get("camera_right", 0) >= 25
    assert meta.stats["samples"]["camera_left"] <= 1
    assert "head" not in drops and "audio" not in drops
    report = validate_session(tmp_path / "shed")
    assert report.streams["audio"].gaps == 0 and report.dropped_frames <= 1


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        if in_ci():
            pytest.fail(f"cannot mount a small tmpfs to test a full disk: {done.stderr.strip()}")
        pytest.skip(f"a full-disk test needs root to mount a small tmpfs ({done.stderr.strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_stops_cleanly_and_leaves_a_valid_session(small_disk: Path) -> None:
    with pytest.raises(WriterError, match="disk full"):
        asyncio.run(_engine(small_disk / "full", 20.0).run())
    session = small_disk / "full"
    meta = load_meta(session)
    assert meta.status == "complete" and meta.stop is not None and "disk full" in meta.stop["reason"]
    report = validate_session(session)
    assert report.ok, [f.message for f in report.errors]
    assert report.packets > 50  # ~5 MB of frames went in before the disk filled


def test_full_disk_through_the_cli_is_one_line(small_disk: Path) -> None:
    result = run_vrcap("record", "--session", "full", "--root", str(small_disk), "--duration", "20")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "disk full" in errors[0] and "Traceback" not in result.stderr
    assert run_vrcap("validate", str(small_disk / "full")).returncode == 0


def test_a_device_slow_to_start_puts_no_frame_behind(tmp_path: Path) -> None:
    """Push sources start before the frame clock's t0: a microphone that takes 300 ms to start (PulseAudio
    on a loaded machine) used to leave frame 0 300 ms late, and the loop skipped ~27 frames to catch up."""
    engine = _engine(tmp_path / "slow", 1.0)
    slow = engine.push_sources[0]
    start = slow.start

    def late_start(sink):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        start(sink)

    slow.start = late_start  # type: ignore[method-assign]
    result = asyncio.run(engine.run())
    report = validate_session(tmp_path / "slow")
    assert result.dropped_frames == 0 and report.dropped_frames == 0
    assert result.frames >= 90
    assert not any(i["kind"] == "frames-skipped" for i in load_meta(tmp_path / "slow").incidents)


def test_a_stalled_frame_loop_leaves_an_incident_that_says_when_and_how_long(tmp_path: Path) -> None:
    """Frames skipped after a stall are counted and explained in session.json: the user sees when it
    happened and by how much, not only a gap in seq."""
    engine = _engine(tmp_path / "stall", 1.5)
    frame = engine.frame_source.frame
    stalled = []

    def stall_once(seq, t_ns):  # type: ignore[no-untyped-def]
        if seq == 45 and not stalled:
            stalled.append(t_ns)
            time.sleep(0.35)  # blocks the loop, as a process kept off the CPU would
        return frame(seq, t_ns)

    engine.frame_source.frame = stall_once  # type: ignore[method-assign]
    result = asyncio.run(engine.run())
    meta = load_meta(tmp_path / "stall")
    skips = [i for i in meta.incidents if i["kind"] == "frames-skipped"]
    report = validate_session(tmp_path / "stall")
    assert len(skips) == 1 and skips[0]["stream"] == "headset"
    assert 25 <= result.dropped_frames <= 40  # 350 ms at 90 Hz = 31.5 frames, less the 100 ms caught up
    assert report.dropped_frames == result.dropped_frames
    assert f"{result.dropped_frames} frames skipped" in skips[0]["message"]
    behind_ms = float(skips[0]["message"].split(" ms behind")[0].rsplit(" ", 1)[1])
    assert 300 <= behind_ms <= 450
    assert abs(skips[0]["t"] - stalled[0]) < 50e6  # stamped near the stall, not at the end


def _nice(stat: Path) -> int:
    """Field 19 of /proc/PID/task/TID/stat (after the command name, which may hold spaces)."""
    return int(stat.read_text().rsplit(")", 1)[1].split()[16])


def test_vrcap_record_asks_for_the_configured_niceness(tmp_path: Path) -> None:
    """`vrcap record` runs at record.nice (the scheduler then favours it over ordinary busy processes); without
    the right to raise priority it keeps the nice value it was started with."""
    proc = subprocess.Popen(
        [*VRCAP_RECORD, "--session", "nice", "--root", str(tmp_path), "--duration", "3", "record.nice=-3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for((tmp_path / "nice" / "session.json").exists, 30.0, "session.json")
        threads = os.listdir(f"/proc/{proc.pid}/task")
        nices = {_nice(Path(f"/proc/{proc.pid}/task/{t}/stat")) for t in threads}
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    allowed = os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 23
    assert nices == ({-3} if allowed else {os.getpriority(os.PRIO_PROCESS, 0)})
