"""The recorder's scheduling priority: ahead of ordinary work, so a busy machine delays other programs, not frames.

Used by `vrcap record` (``record.nice``, ``record.rt_priority``) and by the server's recorder process
(``recorder_nice``, ``recorder_rt_priority`` in the server settings).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

AUTOGROUP = Path("/proc/self/autogroup")


def raise_priority(nice: int, rt_priority: int = 0) -> int:
    """Ask for niceness ``nice`` (< 0: ahead of ordinary processes, as audio servers do) before any thread
    starts, so every thread of the recording inherits it. Needs CAP_SYS_NICE or RLIMIT_NICE; without them the
    recorder keeps the priority it was started with (the API process's threads still run below it).

    With autogrouping (Linux, ``kernel.sched_autogroup_enabled=1``, the default on desktops) a thread's nice
    value only ranks it within its session's group; the CPU is shared between groups by the group's own nice
    value. The recorder runs in a session of its own (the API starts it so), so its group holds only the
    recording, and the group's value is set too: otherwise every busy terminal on the machine gets as much CPU
    as the frame clock, whatever its threads' nice (measured: 115 dropped frames in a quiet 20 s run).

    ``rt_priority`` > 0 asks for SCHED_RR at that priority, for every thread (set before any starts: a frame
    loop that is real time while the camera thread holding the GIL is not still waits for it). Ordinary
    processes, however many, then never keep the recording off the CPU; the recorder needs a fraction of a core.
    """
    for tid in _threads():  # Linux: a nice value is per thread; threads already running (BLAS pools) too
        with contextlib.suppress(OSError):  # not permitted, or the thread has ended: keep its priority
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    # round-robin real time, as audio servers ask for; the kernel caps it at 95% of a core
    if rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(rt_priority))
        except (OSError, AttributeError) as exc:  # not permitted (no CAP_SYS_NICE / RLIMIT_RTPRIO): nice only
            log.warning(
                "real-time priority %d refused (%s); the recording runs at nice %d", rt_priority, exc, nice
            )
    if os.getsid(0) == os.getpid():  # our own session: the group is ours alone, never the user's terminal
        with contextlib.suppress(OSError):  # no autogrouping, or not permitted
            AUTOGROUP.write_text(f"{nice}\n")
    return os.getpriority(os.PRIO_PROCESS, 0)


def autogroup_nice() -> int | None:
    """The nice value of this process's autogroup; None without autogrouping."""
    try:
        return int(AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _threads() -> list[int]:
    """This process's thread ids, the calling thread first (0 names it where /proc is missing)."""
    try:
        others = [int(t) for t in os.listdir("/proc/self/task") if int(t) != threading.get_native_id()]
    except OSError:
        others = []
    return [0, *others]
