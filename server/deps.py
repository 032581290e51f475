"""Dependency aliases: each route states what it needs in its signature (the token, the recorder, the jobs).

The objects themselves are built by ``create_app`` and kept on ``app.state``; nothing here holds state. The
functions are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a thread pool, a hop that would
cost every status request under load. ``HTTPConnection`` serves both HTTP routes and the WebSocket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from server.auth import Authorized as Authorized
from server.jobrunner import JobRunner
from server.recorder import Recorder
from server.session_cache import SessionCache
from server.settings import ServerSettings


async def _settings(request: HTTPConnection) -> ServerSettings:
    return request.app.state.settings


async def _recorder(request: HTTPConnection) -> Recorder:
    return request.app.state.recorder


async def _jobs(request: HTTPConnection) -> JobRunner:
    return request.app.state.jobs


async def _session_cache(request: HTTPConnection) -> SessionCache:
    return request.app.state.session_cache


SettingsDep = Annotated[ServerSettings, Depends(_settings)]
RecorderDep = Annotated[Recorder, Depends(_recorder)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
SessionCacheDep = Annotated[SessionCache, Depends(_session_cache)]
