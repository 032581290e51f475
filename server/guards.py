"""ASGI middleware that runs before routing: the Host check, the body limit, and fair turns for the recorder.

Both are plain ASGI (not BaseHTTPMiddleware), so they also cover WebSockets and add no task per request.

Host check (DNS rebinding): a web page on evil.example can make a victim's browser send requests to
127.0.0.1 by re-pointing its own name there; the browser then sends ``Host: evil.example``. Refusing every Host
that is not ours stops that. IP literals cannot be rebound, so when the server binds a wildcard address (to be
reached from a headset on the LAN) any IP-literal Host is accepted, plus names listed in ``allowed_hosts``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from server.errors import error_body
from server.settings import ServerSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
UNQUEUED = frozenset({"/api/v1/health"})  # answered from memory: a liveness probe never waits behind a burst


def split_host(value: str) -> tuple[str, int | None]:
    """``name:port`` / ``[v6]:port`` / ``name`` → (name, port); a malformed port gives port -1."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, _, port_text = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        rest = f":{port_text}" if port_text else ""
    if not rest:
        return name, None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return name, -1
    return name, int(rest[1:])


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class HostCheck:
    """Refuses requests whose Host header is not an address this server is bound to (421-free: a plain 400)."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.port = settings.port
        names = {settings.host.lower(), *LOOPBACK_NAMES, *(h.lower() for h in settings.allowed_hosts)}
        self.names = {n if ":" not in n or n.startswith("[") else f"[{n}]" for n in names} | names
        self.wildcard = settings.host in WILDCARDS
        self.cors_origins = set(settings.cors_origins)

    def allowed(self, value: str) -> bool:
        name, port = split_host(value)
        if port == -1 or not name:
            return False
        if port is not None and self.port and port != self.port:
            return False
        return name in self.names or (self.wildcard and _is_ip_literal(name))

    def origin_allowed(self, origin: str) -> bool:
        """A browser's WebSocket from another site (cross-site WebSocket hijacking) is refused: same origin or CORS."""
        if origin in self.cors_origins:
            return True
        scheme, sep, rest = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and "/" not in rest and self.allowed(rest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = scope.get("headers", ())
        host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
        if scope["type"] == "websocket":
            origin = next((v.decode("latin-1") for k, v in headers if k == b"origin"), None)
            reason = "host not allowed" if not self.allowed(host) else None
            if reason is None and origin is not None and not self.origin_allowed(origin):
                reason = "origin not allowed"
            if reason is None:
                return await self.app(scope, receive, send)
            # Accept, then close with the documented code: a browser sees 1008 in CloseEvent, not a bare 403.
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return None
        if self.allowed(host):
            return await self.app(scope, receive, send)
        body = error_body(
            "bad-host",
            f"Host header {host!r} is not an address of this server",
            "open the server by the address it prints (e.g. http://127.0.0.1:8765/) or add the name to "
            "allowed_hosts in the server config (vrcap config show server)",
        )
        await _send_json(send, 400, body)
        return None


class BodyLimit:
    """413 for request bodies over ``limit`` bytes: by Content-Length up front, or counted while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                return await _send_json(send, 400, error_body("bad-length", "bad Content-Length", "fix it"))
            if int(length) > self.limit:
                return await _send_json(send, 413, self._body())
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI re-raises an HTTPException from the body read; the app's handler answers 413.
                    raise _TooLarge(413, "request body too large")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, self._body())

    def _body(self) -> dict[str, str]:
        return error_body(
            "body-too-large",
            f"request body is over the {self.limit}-byte limit",
            "send a smaller body (max_body_bytes in the server config (vrcap config show server) sets the limit)",
        )


class _TooLarge(HTTPException):
    """Raised inside the body read; caught here if the app let it through."""


async def _send_json(send: Send, status: int, body: dict[str, str]) -> None:
    data = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class TakeTurns:
    """At most ``per_pass`` HTTP requests start in one pass of the event loop, which the recorder shares.

    asyncio runs every callback that is ready in one pass before it looks at its timers again. A burst of 100
    requests puts 100 handler runs in one pass (~100 ms on two busy cores), late enough for the frame loop to
    skip frames. Here each pass starts a few requests and queues the rest, first come first served, for the
    next passes, so the frame loop's timer gets its turn in between. Nothing is held across a request's own
    awaits (a slow request does not block others), and WebSockets are not counted.
    """

    def __init__(self, app: ASGIApp, per_pass: int) -> None:
        self.app = app
        self.per_pass = per_pass
        self._granted = 0  # requests started in the current pass
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._tick_scheduled = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in UNQUEUED:
            await self._turn()
        return await self.app(scope, receive, send)

    async def _turn(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._waiting and self._granted < self.per_pass:
            self._granted += 1
            self._schedule_tick(loop)
            return
        turn = loop.create_future()
        self._waiting.append(turn)
        self._schedule_tick(loop)
        try:
            await turn
        except asyncio.CancelledError:
            if turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def _schedule_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._tick_scheduled:
            self._tick_scheduled = True
            loop.call_soon(self._tick, loop)  # runs in the next pass

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new pass: the count starts again and the longest-waiting requests get their turn."""
        self._tick_scheduled = False
        self._granted = 0
        while self._waiting and self._granted < self.per_pass:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                self._granted += 1
        if self._granted or self._waiting:
            self._schedule_tick(loop)
