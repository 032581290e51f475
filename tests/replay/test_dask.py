"""`vrcap replay --engine dask` on a real cluster of this machine — `dask scheduler` and two `dask worker` processes
on 127.0.0.1 — with a worker SIGKILLed mid-task; and a driver SIGKILLed mid-run, resumed. Shards byte-equal to
the local engine's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, run_vrcap
from tests.replay.conftest import free_port, require, wait_for_port, write_sim_session

NAMES = ("d0", "d1", "d2", "d3")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask-sessions")
    for name in NAMES:  # long enough (~1 s to convert) that a kill lands mid-task
        write_sim_session(root / name, 20.0, cameras=("left",), hands=False)
    return root


@pytest.fixture(scope="module")
def reference(sessions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dask-ref") / "t"
    done = run_vrcap("replay", str(sessions), "--to-tensors", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A scheduler and two single-threaded workers (each under its nanny, which restarts a killed worker)."""
    require("distributed", "pip install 'vrcap[distributed]'")
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": REPO}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
    ]
    try:
        wait_for_port(port, procs[0])
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                    ],
                    **quiet,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):  # workers (their nannies end their worker processes), then the scheduler
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _same_shards(out: Path, reference: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["sessions"]) == list(NAMES)
    for name in NAMES:
        got = (out / "shards" / f"{name}.safetensors").read_bytes()
        assert got == (reference / "shards" / f"{name}.safetensors").read_bytes(), name
    assert manifest["normalization"] == json.loads((reference / "manifest.json").read_text())["normalization"]


def _spilling_pid(shards: Path) -> int | None:
    """The PID of a process converting right now: its spill folder is ``.<session>.spill-<pid>-<ns>``."""
    for spill in shards.glob(".*.spill-*"):
        return int(spill.name.split(".spill-")[1].split("-")[0])
    return None


def _popen_vrcap(*args: str) -> subprocess.Popen[str]:
    vrcap = str(Path(sys.executable).parent / "vrcap")
    return subprocess.Popen(
        [vrcap, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )


def _wait_for(check: object, timeout_s: float = 120.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout_s:g} s")


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_retried_and_the_manifest_is_complete(
    cluster: str, sessions: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    driver = _popen_vrcap(
        "replay", str(sessions), "--to-tensors", str(out), "--engine", "dask", "--scheduler", cluster
    )

    def kill_a_converting_worker() -> int | None:
        pid = _spilling_pid(out / "shards")
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)  # a dask worker process, mid-conversion
        except ProcessLookupError:  # it finished that very moment: wait for the next one
            return None
        return pid

    victim = int(_wait_for(kill_a_converting_worker))  # type: ignore[call-overload]
    assert victim != driver.pid
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)
    assert all(f"replay: {name}: " in err for name in NAMES), err
    _same_shards(out, reference)
    assert not list((out / "shards").glob(".*")), "a spill folder or temp file was left behind"


def test_the_dask_engine_resumes_by_fingerprint(
    cluster: str, sessions: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    first = run_vrcap(
        "replay", str(sessions), "--to-tensors", str(out), "--engine", "dask", "--scheduler", cluster
    )
    assert first.returncode == 0, first.stderr
    _same_shards(out, reference)
    again = run_vrcap(
        "replay", str(sessions), "--to-tensors", str(out), "--engine", "dask", "--scheduler", cluster
    )
    assert again.returncode == 0 and "4 session(s) already converted" in again.stderr, again.stderr
    _same_shards(out, reference)  # normalization from the kept sessions' sums (stats.json) is the same


def test_a_scheduler_that_does_not_answer_is_one_line_and_exit_2(sessions: Path, tmp_path: Path) -> None:
    require("distributed", "pip install 'vrcap[distributed]'")
    address = f"tcp://127.0.0.1:{free_port()}"
    done = run_vrcap(
        "replay", str(sessions / "d0"), "--to-tensors", str(tmp_path / "t"), "--engine", "dask", "--scheduler",
        address,
    )  # fmt: skip
    err = done.stderr.strip()
    assert done.returncode == 2 and "Traceback" not in err and address in err.splitlines()[-1], err


@pytest.mark.slow
def test_a_driver_killed_mid_run_resumes_where_it_stopped(
    sessions: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    driver = _popen_vrcap("replay", str(sessions), "--to-tensors", str(out))
    _wait_for(lambda: list((out / "shards").glob("*.entry.json")))
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=30)
    assert not (out / "manifest.json").exists()  # the manifest is written last
    finished = len(list((out / "shards").glob("*.entry.json")))
    assert 1 <= finished < len(NAMES)
    again = run_vrcap("replay", str(sessions), "--to-tensors", str(out))
    assert again.returncode == 0, again.stderr
    assert f"{finished} session(s) already converted with this config" in again.stderr, again.stderr
    _same_shards(out, reference)
