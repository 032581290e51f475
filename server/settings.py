"""What one `vrcap serve` process is configured with, and where it keeps its state.

A plain dataclass, loaded like every other vrcap config (YAML ← ``key=value`` overrides), built by the CLI or a
test and handed to ``create_app``: nothing here runs at import time, so each test gets its own root.

    <root>/
    ├── sessions/<name>/        recordings (the same layout `vrcap record --root <root>/sessions` writes)
    ├── datasets/<name>/        tensor shards written by replay jobs
    ├── runs/<job-id>/          training outputs (metrics.jsonl, checkpoints)
    ├── jobs/<job-id>.log       stdout+stderr of each job
    └── .vrcap/
        ├── token               the bearer token when VRCAP_TOKEN is not set (mode 0600)
        └── jobs.sqlite3        job state
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from vrcap.errors import ConfigError

TOKEN_ENV = "VRCAP_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass
class ServerSettings:
    """Settings of the control plane; ``configs/server.yaml`` holds the same keys with comments."""

    host: str = (
        "127.0.0.1"  # bind address; anything but loopback exposes the API to the network (token needed)
    )
    port: int = 8765  # TCP port; 0 picks a free one (then any port is accepted in the Host header)
    root: str = "."  # where sessions, datasets, runs, job logs and the server's state live
    token: str = ""  # bearer token; empty = $VRCAP_TOKEN, else <root>/.vrcap/token (generated on first start)
    allowed_hosts: list[str] = field(default_factory=list)  # extra Host header names, e.g. a LAN DNS name
    cors_origins: list[str] = field(default_factory=list)  # browser origins allowed cross-site; empty = none
    max_body_bytes: int = 65536  # request bodies above this get 413 before they are read
    requests_per_pass: int = (
        2  # HTTP requests started per event-loop pass; the rest queue (see guards.TakeTurns)
    )
    live_interval_s: float = 0.2  # the live stats WebSocket sends a snapshot this often (~5 per second)
    max_running_jobs: int = 2  # more concurrent replay/train jobs are refused (409): the recorder needs CPU
    job_nice: int = 10  # jobs run at this niceness, so a recording keeps the CPU it needs
    stop_timeout_s: float = (
        20.0  # how long stopping a recording may take to finalize before we give up waiting
    )
    cancel_grace_s: float = 5.0  # SIGTERM, then SIGKILL after this long, when a job is cancelled

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535 (got {self.port})")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be at least 1024 (got {self.max_body_bytes})")
        if self.requests_per_pass < 1:
            raise ConfigError(f"requests_per_pass must be at least 1 (got {self.requests_per_pass})")
        if self.live_interval_s <= 0:
            raise ConfigError(f"live_interval_s must be > 0 (got {self.live_interval_s})")
        if self.max_running_jobs < 1:
            raise ConfigError(f"max_running_jobs must be at least 1 (got {self.max_running_jobs})")
        if self.token and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"token must be at least {MIN_TOKEN_CHARS} characters; leave it empty to have one generated"
            )
        if "*" in self.cors_origins:
            raise ConfigError("cors_origins may not hold '*': list the origins that may call the API")

    @property
    def root_dir(self) -> Path:
        return Path(self.root).resolve()

    @property
    def sessions_dir(self) -> Path:
        return self.root_dir / "sessions"

    @property
    def datasets_dir(self) -> Path:
        return self.root_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root_dir / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.root_dir / "jobs"

    @property
    def state_dir(self) -> Path:
        return self.root_dir / ".vrcap"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def make_dirs(self) -> None:
        for path in (self.sessions_dir, self.datasets_dir, self.runs_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
