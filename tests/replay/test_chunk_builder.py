"""Chunks built in the builder process give the same shard as on the thread; a killed builder loses nothing;
a refused session leaves no reply behind for the next one; workers of a pool convert on the thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import psutil
import pytest

from replay import chunk_builder
from replay.config import load_replay_config
from replay.convert import convert_sessions
from replay.errors import SessionRefused
from tests.replay.conftest import write_sim_session
from vrcap.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("builder")
    return {
        "plain": write_sim_session(root / "plain", 4.0, tasks=False),
        "camera": write_sim_session(
            root / "camera", 2.0, cameras=("left",), camera_width=320, camera_height=240, tasks=False
        ),
    }


@pytest.fixture(autouse=True)
def fresh_builder() -> None:
    """Each test starts with no builder process and with the process allowed again."""
    chunk_builder._give_up(chunk_builder._PROCESS)
    chunk_builder._UNAVAILABLE = False


def _shard(session: Path, out: Path, *overrides: str, on_chunk: object = None) -> bytes:
    config = load_replay_config(None, ["convert.chunk_s=0.5", *overrides])
    convert_sessions([session], out, config, progress=False, log=lambda m: None)
    return (out / "shards" / f"{session.name}.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["plain", "camera"])
def test_process_and_thread_give_the_same_bytes(sessions: dict[str, Path], tmp_path: Path, name: str) -> None:
    thread = _shard(sessions[name], tmp_path / "thread", "convert.builder=thread")
    process = _shard(sessions[name], tmp_path / "process", "convert.builder=process")
    assert chunk_builder._PROCESS is not None and chunk_builder._PROCESS.alive()  # it really ran there
    assert len(thread) > 100_000 and process == thread


def test_chunks_without_audio_are_built_in_the_process_too(tmp_path: Path) -> None:
    """The microphone stops after 1 s: later chunks carry no audio block at all, and they must reach the
    builder process (not kill it and fall back to the thread)."""
    session = write_sim_session(tmp_path / "muted", 4.0, tasks=False, mute_from=90)
    thread = _shard(session, tmp_path / "thread", "convert.builder=thread")
    process = _shard(session, tmp_path / "process", "convert.builder=process")
    assert chunk_builder._PROCESS is not None and chunk_builder._PROCESS.alive()
    assert not chunk_builder._UNAVAILABLE  # never gave up on the process
    assert len(thread) > 100_000 and process == thread


def test_auto_is_the_process_here_and_the_thread_in_a_pool_worker() -> None:
    if (os.cpu_count() or 1) >= 2:
        assert chunk_builder.resolve("auto") == "process"
    assert chunk_builder.resolve("auto", cameras=True) == "thread"  # JPEG decodes already fill the cores
    assert chunk_builder.resolve("process", cameras=True) == "process"
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(chunk_builder.resolve, "auto").result() == "thread"
    assert chunk_builder.resolve("thread") == "thread"


def test_a_killed_builder_process_loses_nothing(sessions: dict[str, Path], tmp_path: Path) -> None:
    """SIGKILL the builder after its first chunk: that chunk's reply never comes, it and the rest are built on
    the thread, and the shard is byte for byte the thread's."""
    import replay.tensors as tensors

    reference = _shard(sessions["plain"], tmp_path / "ref", "convert.builder=thread")
    process = chunk_builder.builder_process()
    pid = process.call("pid")
    calls = {"n": 0}
    real = tensors.SessionTotals.add

    def add_then_kill(self: tensors.SessionTotals, chunk: tensors.ChunkTensors) -> None:
        real(self, chunk)
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(pid, signal.SIGKILL)

    tensors.SessionTotals.add = add_then_kill  # type: ignore[method-assign]
    try:
        shard = _shard(sessions["plain"], tmp_path / "killed", "convert.builder=process")
    finally:
        tensors.SessionTotals.add = real  # type: ignore[method-assign]
    assert calls["n"] >= 8  # 4 s in 0.5 s chunks: the conversion went on after the kill
    assert shard == reference
    assert chunk_builder.resolve("auto") == "thread"  # and later sessions stay on the thread


def test_a_refused_session_leaves_no_reply_for_the_next(sessions: dict[str, Path], tmp_path: Path) -> None:
    """A session refused by validation stops with a chunk still in the builder; the next session on the same
    process must get its own chunks, not that reply."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sessions["plain"], broken)
    segment = sorted(broken.glob("packets-*.vrc"))[0]
    data = bytearray(segment.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF  # a CRC error three quarters in: chunks were sent before it is found
    segment.write_bytes(bytes(data))
    config = load_replay_config(None, ["convert.chunk_s=0.5", "convert.builder=process"])
    with pytest.raises(SessionRefused, match="payload checksum"):
        convert_sessions([broken], tmp_path / "out-broken", config, progress=False, log=lambda m: None)
    assert not (tmp_path / "out-broken" / "shards" / "broken.safetensors").exists()
    after = _shard(sessions["plain"], tmp_path / "after", "convert.builder=process")
    reference = _shard(sessions["plain"], tmp_path / "ref", "convert.builder=thread")
    assert after == reference


def test_ctrl_c_is_the_converters_to_handle() -> None:
    """SIGINT goes to the whole process group on Ctrl-C: the builder ignores it and keeps serving, so the
    converter can still collect the chunk it waits for as it stops."""
    process = chunk_builder.builder_process()
    pid = process.call("pid")
    os.kill(pid, signal.SIGINT)
    assert process.call("pid") == pid and process.alive()


def test_a_bad_builder_value_is_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"convert.builder must be one of auto, process, thread \(got 'gpu'\)"
    ):
        load_replay_config(None, ["convert.builder=gpu"])


def test_an_unguarded_script_is_not_run_again_by_the_builder(
    sessions: dict[str, Path], tmp_path: Path
) -> None:
    """multiprocessing's spawn would import the caller's ``__main__`` again in the child; ours does not."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"open({str(marker)!r}, 'a').write('run\\n')\n"
        "from replay.config import load_replay_config\n"
        "from replay.convert import convert_sessions\n"
        "config = load_replay_config(None, ['convert.builder=process', 'convert.chunk_s=0.5'])\n"
        f"convert_sessions([{str(sessions['plain'])!r}], {str(tmp_path / 'out')!r}, config, progress=False,"
        " log=lambda m: None)\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=120, cwd=tmp_path)
    assert marker.read_text() == "run\n"
    assert (tmp_path / "out" / "shards" / "plain.safetensors").stat().st_size > 100_000


def test_the_builder_exits_when_its_converter_is_killed() -> None:
    """SIGKILL on `vrcap replay` (a cancelled server job kills the tree, but a user may kill just the parent):
    the builder reads EOF on its request pipe and exits instead of lingering."""
    import time

    code = (
        f"import os, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from replay.chunk_builder import builder_process\n"
        "print(builder_process().call('pid'), flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    pid = int(done.stdout.split()[0])

    def running() -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(), f"builder {pid} still running after its converter was killed"
