"""The app factory: ``create_app(settings)`` builds everything a server holds, in its lifespan, not at import.

    request ─► HostCheck ─► BodyLimit ─► TakeTurns ─► [CORS, only when configured] ─► routes
                                                                         ├── /                page (no token)
                                                                         ├── /api/v1/health   (no token)
                                                                         └── /api/v1/...      bearer token

On start-up: directories, the token, the job store (jobs a dead server left "running" are marked failed). On
shutdown (SIGTERM through uvicorn): a running recording is stopped and finalized, running jobs are ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from server import jobs, page, recordings, review_api, sessions_api, system, webxr
from server.auth import load_or_create_token
from server.errors import install_error_handlers
from server.guards import BodyLimit, HostCheck, TakeTurns
from server.jobrunner import JobRunner
from server.jobstore import JobStore
from server.models import ErrorBody
from server.recorder import Recorder
from server.session_cache import SessionCache
from server.settings import ServerSettings
from vrcap import __version__

log = logging.getLogger("vrcap.server")
API_PREFIX = "/api/v1"
JOBS_DB = "jobs.sqlite3"
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad request", 401: "missing or wrong token", 404: "not found", 409: "conflict with the current state",
        413: "body too large", 422: "invalid field",
    }.items()
}  # fmt: skip


def create_app(settings: ServerSettings) -> FastAPI:
    settings.make_dirs()
    token = load_or_create_token(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore(settings.state_dir / JOBS_DB)
        app.state.jobs = JobRunner(settings, store)
        orphans = app.state.jobs.recover()
        if orphans:
            log.warning("marked %d jobs failed: they were running when the server stopped", len(orphans))
        app.state.recorder = Recorder(settings, getattr(app.state, "launcher", None))
        app.state.session_cache = SessionCache()
        warming = asyncio.create_task(app.state.session_cache.warm(settings.sessions_dir))
        app.state.review = review_api.Review()
        try:
            yield
        finally:
            warming.cancel()
            await app.state.recorder.shutdown()
            await app.state.jobs.shutdown()
            app.state.session_cache.close()
            app.state.review.close()
            store.close()

    app = FastAPI(
        title="vrcap control plane",
        version=__version__,
        description="Start recordings, annotate them, convert sessions and train models. "
        "Every route but /api/v1/health and the page needs 'Authorization: Bearer <token>'.",
        lifespan=lifespan,
        docs_url=None,  # the Swagger UI loads scripts from a CDN, which the page's CSP and closed networks refuse
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.token = token
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX, responses=ERROR_RESPONSES)
    routers = (
        system.router,
        recordings.router,
        webxr.router,
        sessions_api.router,
        review_api.router,
        jobs.router,
        jobs.datasets_router,
    )
    for router in routers:
        api.include_router(router)
    app.include_router(api)
    app.include_router(page.router)

    # Added last = outermost: the Host check runs before anything else, then the body limit.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TakeTurns, per_pass=settings.requests_per_pass)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(HostCheck, settings=settings)
    return app
