"""Recorder processes keep the server's starting priority; the API process's threads give theirs up.

On Linux a nice value belongs to a thread, and a child inherits the value of the thread that forked it. So
`vrcap serve` starts this launcher thread first, then lowers the priority of its main thread (``api_nice``);
everything the API creates afterwards (uvicorn, worker threads, job watchers) inherits the lower priority, while
recorder processes, forked here, keep the original one. A hammered API process then cannot take the CPU the
frame clock needs: the scheduler favours the recorder (nice 0 against 5: about 3 to 1 under contention).
Raising a priority back would need privileges; lowering one never does.

With autogrouping (Linux's default on desktops, ``kernel.sched_autogroup_enabled=1``) those nice values rank
threads only within their session's group, and the CPU is shared between groups by each group's own nice value.
A recorder runs in a session of its own and sets its group's value (``recorder_nice``, capture/recorder_process.py);
`vrcap serve` sets its own group's value to ``api_group_nice`` when it leads its session (a service, or started
with ``setsid``), never the value of a terminal it shares with a shell. Measured under the abuse mix on a busy
2-core machine: /health p99 67 ms with the API's group at 0, 27.5 ms at -5 (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import subprocess
import threading
from typing import Any

log = logging.getLogger("vrcap.server")


class Launcher:
    """Forks recorder processes from a thread that kept the server's priority (or directly, when not started)."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[list[str], dict[str, Any], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> Launcher:
        self._thread = threading.Thread(target=self._run, name="vrcap-recorder-launcher", daemon=True)
        self._thread.start()
        return self

    def popen(self, argv: list[str], **kwargs: Any) -> concurrent.futures.Future[subprocess.Popen[bytes]]:
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        if self._thread is None:  # an app built without `vrcap serve` (tests in-process): fork here
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)
        else:
            self._requests.put((argv, kwargs, future))
        return future

    def _run(self) -> None:
        while True:
            argv, kwargs, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # reported to the caller, who answers the API request
                future.set_exception(exc)


def lower_api_priority(nice: int) -> None:
    """Lower the calling thread's priority by ``nice`` (Linux: per thread; inherited by threads it creates)."""
    if nice <= 0:
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, min(19, current + nice))  # who=0: this thread only, on Linux
    except OSError as exc:
        log.warning(
            "could not lower the API's priority (%s); the recorder then competes with it equally", exc
        )


AUTOGROUP = "/proc/self/autogroup"


def set_group_priority(nice: int) -> str:
    """Set this process's autogroup nice value when the group is this process's alone; what was done, in words."""
    if os.getsid(0) != os.getpid():
        return "kept (the server shares its session's group, e.g. a terminal's)"
    try:
        with open(AUTOGROUP, "w") as f:
            f.write(f"{nice}\n")
    except OSError as exc:  # no autogrouping, or lowering below 0 without CAP_SYS_NICE
        log.warning("could not set the API's scheduling group to nice %d (%s); it stays as it was", nice, exc)
        return "kept"
    return f"nice {nice}"
