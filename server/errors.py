"""Every error response: a JSON body that names the problem and the fix, never a traceback.

ApiError                 raised by routes; carries status, code, problem and fix
vrcap errors             translated here: UsageError/ConfigError → 4xx, other VrcapError → 409/500-free
validation errors        pydantic's, rewritten as one readable line per field (422)
anything else            a bug: 500 with the exception's type, the traceback goes to the server log only
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vrcap.errors import (
    CaptureError,
    ConfigError,
    FormatError,
    NotASession,
    SessionExists,
    SessionNameError,
    UsageError,
    VrcapError,
)

log = logging.getLogger("vrcap.server")


class ApiError(Exception):
    """An error a client can act on. ``fix`` tells them how, in the words of the API."""

    def __init__(
        self, status: int, code: str, problem: str, fix: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(problem)
        self.status = status
        self.code = code
        self.problem = problem
        self.fix = fix
        self.headers = headers


def error_body(code: str, problem: str, fix: str) -> dict[str, Any]:
    return {"error": code, "detail": problem, "fix": fix}


def error_response(
    status: int, code: str, problem: str, fix: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, problem, fix), status_code=status, headers=headers)


_HTTP_FIXES = {
    404: ("not-found", "check the path against /openapi.json"),
    405: ("method-not-allowed", "check the method against /openapi.json"),
    413: ("body-too-large", "send a smaller request body"),
}


def _vrcap_error(exc: VrcapError) -> tuple[int, str, str]:
    """Status, code and fix for errors raised by the shared packages (their messages already name the fix)."""
    if isinstance(exc, SessionNameError):
        return 422, "bad-session-name", "use letters, digits, '-', '_' and '.'"
    if isinstance(exc, SessionExists):
        return 409, "session-exists", "pick another session name or delete the old session"
    if isinstance(exc, NotASession):
        return 404, "not-a-session", "list sessions with GET /api/v1/sessions"
    if isinstance(exc, ConfigError):
        return 422, "bad-config", "fix the setting named in 'detail'"
    if isinstance(exc, UsageError):
        return 400, "bad-request", "change the request as 'detail' says"
    if isinstance(exc, CaptureError):
        return 409, "capture-failed", "check the devices with GET /api/v1/devices and try again"
    if isinstance(exc, FormatError):
        return 409, "bad-session-data", "`vrcap validate --fix` on the server repairs what can be repaired"
    return 409, "failed", "see 'detail'"


def without_root(request: Request, text: str) -> str:
    """Paths in a message named relative to the server's root: clients never learn its absolute layout."""
    settings = getattr(request.app.state, "settings", None)
    if settings is None:
        return text
    root = str(settings.root_dir)
    return text.replace(root + os.sep, "").replace(root, ".")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    by_template: dict[str, set[str]] = {}
    path = request.scope.get("path", "")
    for route in request.app.router.routes:
        contexts = route.effective_route_contexts() if hasattr(route, "effective_route_contexts") else [route]
        for ctx in contexts:  # included routers (newer FastAPI) hold their routes as contexts
            regex = getattr(ctx, "path_regex", None)
            if regex is not None and regex.match(path):
                by_template.setdefault(ctx.path, set()).update(getattr(ctx, "methods", None) or ())
    if not by_template:
        return []
    # The most literal path wins, as documented: /jobs/replay is that route, not /jobs/{job_id}.
    fewest = min(t.count("{") for t in by_template)
    methods = set().union(*(m for t, m in by_template.items() if t.count("{") == fewest))
    methods.discard("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, without_root(request, exc.problem), exc.fix, exc.headers)

    @app.exception_handler(VrcapError)
    async def _vrcap(request: Request, exc: VrcapError) -> JSONResponse:
        status, code, fix = _vrcap_error(exc)
        return error_response(status, code, without_root(request, str(exc)), fix)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(
            422, "invalid-request", "; ".join(problems), "correct the fields named here (see /openapi.json)"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, fix = _HTTP_FIXES.get(exc.status_code, ("http-error", "see /openapi.json"))
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), fix, headers or None)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            "internal",
            f"internal error: {type(exc).__name__}",
            "this is a bug in vrcap; the server log holds the traceback, please report it",
        )
