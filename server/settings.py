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
import os
from pathlib import Path

from pydantic import Field
from pydantic.dataclasses import dataclass

from vrcap.errors import ConfigError

TOKEN_ENV = "VRCAP_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass
class ServerSettings:
    """Settings of the control plane; ``vrcap/configs/server.yaml`` holds the same keys with comments."""

    host: str = Field(
        "127.0.0.1",
        description="bind address; anything but loopback exposes the API to the network (token needed)",
    )
    port: int = Field(
        8765,
        ge=0,
        le=65535,
        description="TCP port; 0 picks a free one (then any port is accepted in the Host header)",
    )
    root: str = Field(".", description="where sessions, datasets, runs, job logs and the server's state live")
    token: str = Field(
        "",
        description="bearer token; empty = $VRCAP_TOKEN, else <root>/.vrcap/token (generated on first start)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="extra Host header names, e.g. a LAN DNS name"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed cross-site; empty = none"
    )
    max_body_bytes: int = Field(
        65536, ge=1024, le=2**30, description="request bodies above this get 413 before they are read"
    )
    requests_per_pass: int = Field(
        2,
        ge=1,
        le=1000,
        description="HTTP requests started per event-loop pass; the rest queue (see guards.TakeTurns)",
    )
    live_interval_s: float = Field(
        0.2, gt=0, le=60, description="the live stats WebSocket sends a snapshot this often (~5 per second)"
    )
    max_running_jobs: int = Field(
        2,
        ge=1,
        le=64,
        description="more concurrent replay/train jobs are refused (409): the recorder needs CPU",
    )
    job_nice: int = Field(
        10, ge=0, le=19, description="jobs run at this niceness, so a recording keeps the CPU it needs"
    )
    recorder_nice: int = Field(
        -5, ge=-20, le=19,
        description="the recorder process asks for this niceness, as audio servers do (< 0 needs CAP_SYS_NICE; else kept)",
    )  # fmt: skip
    recorder_rt_priority: int = Field(
        10, ge=0, le=99,
        description="the recorder process asks for real-time round-robin scheduling at this priority, as audio "
        "servers do (0 = off; needs CAP_SYS_NICE or RLIMIT_RTPRIO, else it runs at recorder_nice)",
    )  # fmt: skip
    stop_timeout_s: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="how long stopping a recording may take to finalize before we give up waiting",
    )
    cancel_grace_s: float = Field(
        5.0, ge=0, le=600, description="SIGTERM, then SIGKILL after this long, when a job is cancelled"
    )
    api_nice: int = Field(
        5, ge=0, le=19,
        description="the API's threads lower their priority by this; recorder processes keep the server's",
    )  # fmt: skip
    api_group_nice: int = Field(
        -2, ge=-20, le=19,
        description="the API process's scheduling group (Linux autogroup) gets this nice value when the server "
        "leads its session: below 0 answers /health ahead of ordinary work, above recorder_nice (< 0 needs CAP_SYS_NICE)",
    )  # fmt: skip
    max_nproc: int = Field(
        0,
        ge=0,
        le=4096,
        description="most processes one training job may ask for; 0 = this machine's CPU cores",
    )
    max_connections: int = Field(
        512, ge=1, le=100_000,
        description="open connections (HTTP and WebSocket); more are answered 503 and closed",
    )  # fmt: skip
    max_connections_per_client: int = Field(
        128, ge=1, le=100_000, description="open connections from one client address; more get 503"
    )
    ws_handshakes_per_s: float = Field(
        5.0, gt=0, le=10_000,
        description="WebSocket handshakes one client address may make per second, on average; more get 429",
    )  # fmt: skip
    ws_handshake_burst: int = Field(
        20,
        ge=1,
        le=100_000,
        description="... and at once, after a quiet while (tabs and headsets reconnecting)",
    )
    header_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="a request's headers must be complete this long after it began, else 408",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a request's body must be complete this long after its headers, else 408",
    )

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
        if self.max_connections < 1 or self.max_connections_per_client < 1:
            raise ConfigError("max_connections and max_connections_per_client must be at least 1")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ConfigError("header_timeout_s and body_timeout_s must be > 0")
        if not -20 <= self.recorder_nice <= 19:
            raise ConfigError(f"recorder_nice must be between -20 and 19 (got {self.recorder_nice})")
        if not 0 <= self.api_nice <= 19:
            raise ConfigError(f"api_nice must be between 0 and 19 (got {self.api_nice})")
        if self.max_nproc < 0:
            raise ConfigError(f"max_nproc must be >= 0, 0 meaning the machine's cores (got {self.max_nproc})")
        if self.token and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"token must be at least {MIN_TOKEN_CHARS} characters; leave it empty to have one generated"
            )
        if "*" in self.cors_origins:
            raise ConfigError("cors_origins may not hold '*': list the origins that may call the API")

    @property
    def nproc_limit(self) -> int:
        return self.max_nproc or os.cpu_count() or 1

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
        """The root's folders with explicit modes (whatever the umask); a folder that is a link is refused."""
        from server.safepaths import DIR_MODE, make_dir

        for path, mode in ((self.sessions_dir, DIR_MODE), (self.datasets_dir, DIR_MODE), (self.runs_dir, DIR_MODE),
                           (self.logs_dir, DIR_MODE), (self.state_dir, 0o700)):  # fmt: skip
            if path.is_symlink():
                raise ConfigError(
                    f"{path.name}/ under the root is a symbolic link; the server follows no links: "
                    "make it a real folder"
                )
            make_dir(path, mode)


def load_server_settings(
    path: Path | str | None = None, overrides: list[str] | None = None
) -> ServerSettings:
    """The shipped server.yaml (or a NAME or PATH) with ``key=value`` overrides on top."""
    from vrcap.config import load_config

    return load_config(ServerSettings, path, overrides, default_name="server.yaml")
