"""Convert sessions in this process and print its peak memory as JSON: ``{"peak_rss_mb", "peak_anon_mb", "s"}``.

    .venv/bin/python -m tools.bench.peak_rss SESSION... OUT [KEY=VALUE ...]

Why a process of its own: peak RSS (``ru_maxrss``) is a high-water mark of the whole process, so each
measurement needs a fresh one. RSS counts the mapped session segments too (file pages the kernel can drop at
will); the anonymous part (sampled from /proc/self/status every 5 ms) is what the converter itself holds.
Both add the chunk-builder process's own figures (replay/chunk_builder.py) when it ran.
Used by tools/bench/replay.py and tests/replay/test_chunked.py.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def _status_kb(field: str, pid: str = "self") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:  # the builder process is not there (yet, or any more)
        pass
    return 0


def _builder_pid() -> str | None:
    """The chunk-builder process (replay/chunk_builder.py): its memory is the conversion's too."""
    from replay import chunk_builder

    process = chunk_builder._PROCESS
    return str(process.proc.pid) if process is not None else None


def _anon_kb() -> int:
    pid = _builder_pid()
    return _status_kb("RssAnon") + (_status_kb("RssAnon", pid) if pid else 0)


def main(argv: list[str]) -> int:
    from replay.config import load_replay_config
    from replay.convert import convert_sessions

    words = [w for w in argv if "=" not in w]
    overrides = [w for w in argv if "=" in w]
    *sessions, out = words
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _anon_kb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    cpu0 = time.process_time()
    convert_sessions(sessions, out, load_replay_config(None, overrides), progress=False, log=lambda m: None)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    stop.set()
    sampler.join()
    # VmHWM, not ru_maxrss: the latter survives exec, so a child of a large process reports its parent's peak
    pid = _builder_pid()
    builder_rss = _status_kb("VmHWM", pid) if pid else 0
    rss = _status_kb("VmHWM") + builder_rss  # the sum of both peaks: at least the real combined peak
    print(
        json.dumps(
            {
                "peak_rss_mb": rss / 1024,
                "builder_peak_rss_mb": builder_rss / 1024,
                "peak_anon_mb": max(peak[0], _anon_kb()) / 1024,
                "s": seconds,
                "cpu_s": cpu,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
