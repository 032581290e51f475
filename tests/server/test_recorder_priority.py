"""The recorder process gets the CPU ahead of ordinary work: real-time round robin and its autogroup's nice.

Read from /proc of the real recorder process that a real `vrcap serve` started. Without the privilege
(CAP_SYS_NICE) the recorder keeps running at the priority it had; that is a skip here, a failure in CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.helpers import in_ci, wait_for
from tests.server.live import ServeProcess, record

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


def _permitted() -> bool:
    done = subprocess.run(["chrt", "-r", "1", "true"], capture_output=True)
    return done.returncode == 0


def _recorder_pid(serve: ServeProcess) -> int:
    """The recorder process this server started (not another server's on the same machine)."""
    for child in psutil.Process(serve.proc.pid).children(recursive=True):
        if "capture.recorder_process" in " ".join(child.cmdline()):
            return int(child.pid)
    raise AssertionError("the server has no recorder process")


def test_every_thread_of_the_recording_runs_real_time_in_a_group_ahead_of_ordinary_ones(
    serve: ServeProcess,
) -> None:
    if not _permitted():
        if in_ci():
            pytest.fail("SCHED_RR is not permitted here (CAP_SYS_NICE): the recorder would run at nice only")
        pytest.skip("SCHED_RR needs CAP_SYS_NICE or RLIMIT_RTPRIO: run as root or with CI=true")
    with serve.client() as client:
        rec = record(client, "priority", duration_s=3)
        wait_for(
            lambda: (client.get("/api/v1/recordings/current").json()["stats"] or {}).get("frames", 0) > 10,
            20,
            "frames",
        )
        pid = _recorder_pid(serve)
        assert os.sched_getscheduler(pid) == os.SCHED_RR and os.sched_getparam(pid).sched_priority == 10
        threads = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            threads[int(tid)] = (name, os.sched_getscheduler(int(tid)))
        group = Path(f"/proc/{pid}/autogroup").read_text().split()
        assert group[-1] == "-5", group  # /autogroup-N nice -5: the recorder's own group
        assert Path(f"/proc/{serve.proc.pid}/autogroup").read_text() != " ".join(group)
        client.post(f"/api/v1/recordings/{rec['id']}/stop")
    # The frame loop, writer, sources and sender are Python threads started after the start message: all RR.
    # Threads a library started at import (before it) keep the normal policy: at most two (BLAS).
    normal = [t for t, (_, policy) in threads.items() if policy != os.SCHED_RR]
    assert len(threads) - len(normal) >= 6 and len(normal) <= 2, threads
