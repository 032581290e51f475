"""Sessions for the replay tests: one real recording through `vrcap record` (shared by every test module: it
takes real time) and sessions written packet by packet from the simulator, with chosen packets left out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from capture.sim import SimConfig
from capture.sim_source import SimPacketGenerator, sim_clock
from tests.helpers import in_ci, run_vrcap
from vrcap.writer import SessionWriter, WriterConfig

T0 = 1_000_000_000_000  # host monotonic ns of sim time 0 in written sessions
RECORD_SECONDS = 3.0
RECORD_SIM = ("sim.camera_width=320", "sim.camera_height=240")


def write_sim_session(
    path: Path,
    seconds: float,
    *,
    skip: Iterable[int] = (),
    drop_streams: Iterable[str] = (),
    annotations: Iterable[tuple[int, str, str]] = (),
    mute_from: int | None = None,
    **sim: object,
) -> Path:
    """A sim session written offline: packets ``skip`` are left out (dropped frames), streams in ``drop_streams``
    are declared but never written (an incident says why, as a failing device would), ``annotations`` are
    (sim time ns, text, channel) placed in the first packet at or after their time; from packet ``mute_from`` on
    the audio stops (a microphone unplugged mid-session)."""
    config = SimConfig(**sim)  # type: ignore[arg-type]
    gen = SimPacketGenerator(config, jpeg_quality=90, t0_ns=T0)
    skip, drop = set(skip), set(drop_streams)
    pending = sorted(annotations)
    rate = config.audio_rate_hz
    clocks = {
        "headset": sim_clock(T0),
        "audio": {
            "type": "linear",
            "unit": "sample_index",
            "segments": [{"from_index": 0, "a_ns": float(T0), "b_ns": 1e9 / rate}],
        },
    }
    clocks.update({f"camera_{c}": sim_clock(T0) for c in config.cameras})
    streams = list(gen.streams)  # with the annotations stream, as a live recording has
    with SessionWriter.create(
        path, streams, config=WriterConfig(fsync=False), clocks=clocks, start_mono_ns=T0
    ) as w:
        for seq in range(round(seconds * config.headset_rate_hz)):
            packet = gen.packet(seq)
            if seq in skip:
                continue
            for name in drop:
                packet["s"].pop(name, None)
            if mute_from is not None and seq >= mute_from:
                packet["s"].pop("audio", None)
            while pending and pending[0][0] <= packet["st"]:
                st, text, channel = pending.pop(0)
                item = {
                    "t": T0 + st,
                    "st": T0 + st,
                    "d": {"text": text, "kind": "marker", "channel": channel},
                }
                packet["s"].setdefault("annotations", []).append(item)
            w.write_packet(packet)
        for name in sorted(drop):
            w.add_incident(name, "device-error", "left out by the test", T0)
    return path


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `vrcap record --source sim` session (3 s, two 320x240 cameras, sim audio)."""
    root = tmp_path_factory.mktemp("recorded")
    done = run_vrcap(
        "record", "--session", "rec", "--root", str(root), "--source", "sim", "--duration", str(RECORD_SECONDS),
        "writer.fsync=false", *RECORD_SIM,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "rec"


@pytest.fixture(scope="session")
def pulse_server() -> str:
    """The PulseAudio test server of tests/capture (fails in CI when PulseAudio is missing, skips elsewhere)."""
    from tests.capture import pulse

    return pulse.pulse_server()


def require(module: str, hint: str) -> None:
    """Import ``module`` or skip with the install hint; in CI (CI=true, where the set-up installs it) fail."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed: {hint}"
        if in_ci():
            pytest.fail(f"{message} (CI must have it: see Makefile install-dev)")
        pytest.skip(message)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: object, timeout_s: float = 30.0) -> None:
    """Until something listens on 127.0.0.1:``port``; fails if ``proc`` (a Popen) exits first."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # type: ignore[attr-defined]
            pytest.fail(f"{proc.args} exited with {proc.returncode} before listening")  # type: ignore[attr-defined]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listened on 127.0.0.1:{port} after {timeout_s:g} s")


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3-compatible server (moto_server) on loopback, and the standard AWS environment pointing at it:
    the storage library (s3fs/botocore) finds endpoint and credentials there, as it would for a user."""
    import os
    import subprocess
    import sys

    require("s3fs", "pip install 'vrcap[storage]'")
    require("moto.server", "pip install 'moto[server]' (the dev extra has it)")
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path_factory.mktemp("moto"),
    )
    try:
        wait_for_port(port, proc)
        env = {
            "AWS_ACCESS_KEY_ID": "vrcap-test",
            "AWS_SECRET_ACCESS_KEY": "vrcap-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        proc.terminate()
        proc.wait(timeout=10)
