"""The bearer token: where it comes from, and the check every protected route depends on.

The token is the only credential. It comes from settings, else $VRCAP_TOKEN, else ``<root>/.vrcap/token``,
generated on first start and written with mode 0600 so other local users cannot read it. Comparison is constant
time (hmac.compare_digest), so a network attacker cannot learn it a byte at a time from response timings.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from server.errors import ApiError
from server.settings import MIN_TOKEN_CHARS, TOKEN_ENV, ServerSettings

TOKEN_FILE = "token"
_FIX = "send 'Authorization: Bearer <token>'; `vrcap serve` prints the token and a pairing URL"


def load_or_create_token(settings: ServerSettings) -> str:
    """The token this server accepts; generating and storing one (0600) when none is configured."""
    if settings.token:
        return settings.token
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        if len(env) < MIN_TOKEN_CHARS:
            raise ApiError(500, "weak-token", f"${TOKEN_ENV} is too short", f"use {MIN_TOKEN_CHARS}+ chars")
        return env
    path = settings.state_dir / TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= MIN_TOKEN_CHARS:
            _tighten(path)
            return token
    return _write_new_token(path)


def _write_new_token(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    # O_EXCL + 0600 from the first byte: the token is never readable by others, not even for an instant.
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def _tighten(path: Path) -> None:
    """A token file someone made readable by others is put back to 0600."""
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison; a token that is not valid UTF-8 (a lone surrogate from JSON) is just wrong."""
    if not offered:
        return False
    try:
        candidate = offered.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), candidate)


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


async def require_token(request: Request) -> None:
    """Dependency of every protected route: 401 without the right bearer token."""
    expected: str = request.app.state.token
    offered = bearer_from_header(request.headers.get("authorization"))
    if offered is None:
        raise ApiError(401, "unauthorized", "no bearer token", _FIX, {"WWW-Authenticate": "Bearer"})
    if not token_matches(expected, offered):
        raise ApiError(401, "unauthorized", "wrong bearer token", _FIX, {"WWW-Authenticate": "Bearer"})


Authorized = Annotated[None, Depends(require_token)]
