"""The abuse mix of issue 12 against a real `vrcap serve` during a real recording: no frame lost, /health up.

tools/bench/abuse.py runs it: a 2.4 MB job log tailed, a 5 MB metrics.jsonl polled, 200 sessions listed,
50 authenticated and 300 token-less WebSocket clients, 1,000 idle sockets and a slow header sender, for 12 s here (the bench's default is longer).
The attackers run in a process of their own at nice 10, in a scheduling group of their own (clients on other
machines would cost the server nothing); the recorder process runs real time (SCHED_RR), its group at nice -5.
Bounded: fixed counts, 12 s of attack, a 300 s ceiling; the recording uses 320x240 cameras without fsync to
leave the 2-core CI machine some room.

Strictly 0 dropped frames, with no quiet control to compare with: the recorder's frame loop only skips frames
when it is kept off the CPU for more than 100 ms, and its threads run real time (SCHED_RR, ahead of every
ordinary process, however many; test_recorder_priority checks that it is granted). Before that, at nice -5
only, the quiet controls themselves dropped 9-202 frames on this shared machine (load 8-18); since, 0 in the
quiet and the abused recordings of every run but one (docs/PERFORMANCE.md): at load 18.6 one bench run (full-size
cameras, fsync) dropped 18 frames quiet and 20 under the mix, a stall we could not explain (not the mix: the
quiet run had it too). So this is as robust as the machine: a neighbour's load far beyond the cores can still
fail it, and the failure prints the load average next to the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

ATTACK_S = 12  # long enough for every kind of request many times over; CI time is shared


def test_the_abuse_mix_drops_no_frame_and_health_answers_throughout(tmp_path: Path) -> None:
    out = tmp_path / "abuse.json"
    command = [sys.executable, str(REPO / "tools" / "bench" / "abuse.py"), "--seconds", str(ATTACK_S),
               "--small", "--no-control", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads(out.read_text())["abused"]
    said = f"{done.stdout}\nload average {os.getloadavg()}"
    assert run["dropped_frames"] == 0 and sum(run["drops"].values()) == 0, said
    assert run["frames"] >= 0.95 * 90 * ATTACK_S, said  # the recording ran the whole time at 90 Hz
    assert run["health_failures"] == 0 and run["health_ok"] >= ATTACK_S, said  # at least one a second
    served = run["requests"]
    assert min(served.get(k, 0) for k in ("log", "metrics", "sessions", "detail", "ws snapshot")) > 0, served
    # Token-less clients were turned away (closed 4401, or refused by the handshake budget or the caps).
    assert served.get("ws closed", 0) + served.get("ws 429", 0) + served.get("ws 503", 0) >= 300, served
    assert served.get("ws 429", 0) > 0, served  # the per-address handshake budget acted
