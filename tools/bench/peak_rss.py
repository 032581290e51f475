"""Convert sessions in this process and print its peak memory as JSON: ``{"peak_rss_mb", "peak_anon_mb", "s"}``.

    .venv/bin/python -m tools.bench.peak_rss SESSION... OUT [KEY=VALUE ...]

Why a process of its own: peak RSS (``ru_maxrss``) is a high-water mark of the whole process, so each
measurement needs a fresh one. RSS counts the mapped session segments too (file pages the kernel can drop at
will); the anonymous part (sampled from /proc/self/status every 5 ms) is what the converter itself holds.
Used by tools/bench/replay.py and tests/replay/test_chunked.py.
"""

from __future__ import annotations

import json
import sys
import threading
import time


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def _anon_kb() -> int:
    return _status_kb("RssAnon")


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
    rss = _status_kb("VmHWM")
    print(
        json.dumps(
            {
                "peak_rss_mb": rss / 1024,
                "peak_anon_mb": max(peak[0], _anon_kb()) / 1024,
                "s": seconds,
                "cpu_s": cpu,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
