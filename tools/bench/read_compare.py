"""Read one session with the vrcap code of another tree: before/after figures for a reader change, in one run.

    git archive <commit> vrcap | tar -x -C /tmp/base
    .venv/bin/python tools/bench/read_compare.py /tmp/base SESSION      # the old tree's vrcap
    .venv/bin/python tools/bench/read_compare.py . SESSION              # this tree's

Prints the best of 3 packets/s of SessionReader.packets() and of validate_session. Alternate the two trees a few
times on a busy machine: the spread between repeats says how much a difference means.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(code: str, session: str) -> None:
    # The editable install's finder would import this checkout's vrcap whatever sys.path says: drop it.
    sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, str(Path(code).resolve()))
    import vrcap.reader
    import vrcap.validate

    assert vrcap.reader.__file__.startswith(str(Path(code).resolve())), vrcap.reader.__file__
    best_read = best_validate = 0.0
    count, ok = 0, False
    for _ in range(3):
        start = time.perf_counter()
        with vrcap.reader.SessionReader(Path(session)) as reader:
            count = sum(1 for _ in reader.packets())
        best_read = max(best_read, count / (time.perf_counter() - start))
        start = time.perf_counter()
        ok = vrcap.validate.validate_session(Path(session)).ok
        best_validate = max(best_validate, count / (time.perf_counter() - start))
    print(
        f"{code}: read {best_read:,.0f} pkt/s, validate {best_validate:,.0f} pkt/s ({count} packets, ok={ok})"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
