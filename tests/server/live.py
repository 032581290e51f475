"""A real `vrcap serve` in a subprocess on a free loopback port, and small helpers the server tests share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import REPO

TOKEN = "test-token-0123456789abcdef"
SMALL_SIM = {"sim.camera_width": 320, "sim.camera_height": 240, "writer.fsync": False}


# A few seconds of recording cut into time blocks: gaps of tiny's window (16 steps) leave train windows.
SHORT_SPLIT = {"split.gap_steps": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`python -m vrcap serve` as a user starts it; ``stop()`` sends SIGTERM, ``kill()`` SIGKILLs its group."""

    def __init__(self, root: Path, *args: str, token: str | None = TOKEN, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        env = dict(os.environ)
        env.pop("VRCAP_TOKEN", None)
        if token is not None:
            env["VRCAP_TOKEN"] = token
        self.log_path = root / f"serve-{self.port}.log"
        root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vrcap", "serve", "--root", str(root), "--port", str(self.port), *args],
            cwd=str(REPO), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vrcap serve exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"vrcap serve did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd or Ctrl-C would; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its process group): a crash or power cut."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def record(client: httpx.Client, session: str, **extra: Any) -> dict[str, Any]:
    """Start a small sim recording; the status body (asserts 201)."""
    body = {"session": session, "source": "sim", "audio": "sim", "overrides": dict(SMALL_SIM), **extra}
    response = client.post("/api/v1/recordings", json=body)
    assert response.status_code == 201, response.text
    return response.json()
