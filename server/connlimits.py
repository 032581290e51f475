"""Connection limits below the ASGI app: a cap per server and per client address, header and body timeouts.

uvicorn keeps any socket open that sends nothing, or sends its headers a byte a second, and answers
``limit_concurrency`` only once a request's headers are complete: 1,100 idle sockets exhausted the server's
descriptors and ``/health`` failed with ECONNRESET. This protocol (uvicorn's httptools protocol with checks
around its callbacks) answers 503 and closes at once a connection over ``max_connections`` or over
``max_connections_per_client`` from one address; closes with 408 a request whose headers are not complete
``header_timeout_s`` after it began (or after the connection opened), and one whose body is not complete
``body_timeout_s`` after its headers. WebSockets count against the same caps for as long as they are open.

WebSocket handshakes are also rate-limited per client address (``ws_handshakes_per_s``, bursts of
``ws_handshake_burst``): a handshake costs the server a protocol switch, an ASGI task and a token wait, and
300 token-less clients reconnecting made about 500 of them a second. Over the budget, the upgrade is answered
429 with Retry-After before any WebSocket exists (a browser sees the socket fail and retries later).

``GET /api/v1/health`` is answered here, as soon as its headers are parsed, when nothing else is in flight on
the connection: the liveness probe then needs one pass of a busy event loop, not three (no ASGI task, no
middleware), and reads only memory. Its body is the route's (server/system.py); anything unusual about the
request (a query, a foreign Host, an Origin header, a pipelined request) goes the ordinary way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.settings import ServerSettings

_CLOSE = b"connection: close\r\ncontent-type: application/json\r\n"


def _response(status: bytes, code: str, detail: str) -> bytes:
    body = f'{{"error":"{code}","detail":"{detail}","fix":"retry later; see docs/API.md, limits"}}'.encode()
    return b"HTTP/1.1 " + status + b"\r\n" + _CLOSE + b"content-length: %d\r\n\r\n" % len(body) + body


REFUSED = _response(b"503 Service Unavailable", "too-many-connections", "too many open connections")
TIMED_OUT = _response(b"408 Request Timeout", "request-timeout", "the request was not sent in time")
HEALTH_PATH = b"/api/v1/health"
HEALTH_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
PRUNE_AT = 4096  # addresses remembered by the handshake budget before the full ones are forgotten


def too_many_handshakes(retry_after_s: float) -> bytes:
    body = (
        b'{"error":"too-many-handshakes","detail":"too many WebSocket handshakes from this address",'
        b'"fix":"reconnect after Retry-After seconds; see docs/API.md, limits"}'
    )
    head = b"HTTP/1.1 429 Too Many Requests\r\n" + _CLOSE + b"retry-after: %d\r\n" % math.ceil(retry_after_s)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


class HandshakeBudget:
    """A token bucket per client address: ``burst`` handshakes at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)

    def take(self, address: str) -> float:
        """0 when a handshake from ``address`` may go ahead (one token is spent), else seconds to wait."""
        now = self.clock()
        tokens, then = self._buckets.get(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[address] = (tokens - 1.0, now)
        if len(self._buckets) > PRUNE_AT:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget addresses whose bucket has refilled: they are as new ones (memory stays bounded)."""
        full = [a for a, (t, then) in self._buckets.items() if t + (now - then) * self.rate >= self.burst]
        for address in full:
            del self._buckets[address]


class GuardedHttp(HttpToolsProtocol):
    """Set ``limits`` (``guarded_http(settings)``) before uvicorn builds one of these per connection."""

    settings: ServerSettings
    per_client: Counter[str]
    handshakes: HandshakeBudget
    health_body: Callable[[], bytes | None]  # the /health body, None until the app has started
    host_allowed: Callable[[str], bool]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = ""
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._answered = False  # the current request was answered here (a fast /health)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        self.per_client[self._address] += 1
        self._counted = True
        s = self.settings
        if (
            len(self.connections) > s.max_connections
            or self.per_client[self._address] > s.max_connections_per_client
        ):
            transport.write(REFUSED)
            transport.close()
            return
        self._arm(s.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._answered = False
        super().on_message_begin()
        if self._timer is None:
            self._arm(self.settings.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._answer_health():
            return
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.settings.body_timeout_s)

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._answered:
            super().on_message_complete()

    def _answer_health(self) -> bool:
        """Answer ``GET /api/v1/health`` at once when it is plain and alone on its connection (see above)."""
        if self.url != HEALTH_PATH or self.parser.get_method() != b"GET" or self.parser.should_upgrade():
            return False
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            return False
        body = self.health_body()
        host = next((v.decode("latin-1") for k, v in self.headers if k == b"host"), "")
        if body is None or not self.host_allowed(host) or self.parser.get_http_version() != "1.1":
            return False
        if any(
            k == b"origin" for k, _ in self.headers
        ):  # a browser's cross-site fetch: CORS headers by the app
            return False
        keep_alive = self.parser.should_keep_alive()
        head = HEALTH_HEAD + (b"" if keep_alive else b"connection: close\r\n")
        self.transport.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        self._answered = True
        self.server_state.total_requests += 1
        if not keep_alive:
            self.transport.close()
        elif self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        return True

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        wait = self.handshakes.take(self._address)
        if wait > 0:
            self.transport.write(too_many_handshakes(wait))
            self.transport.close()
            return
        super().handle_websocket_upgrade()
        ws = self.transport.get_protocol()
        lost = ws.connection_lost

        def release_then_lose(exc: Exception | None) -> None:  # the WebSocket keeps this connection's slot
            self._release()
            lost(exc)

        ws.connection_lost = release_then_lose  # type: ignore[method-assign]

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.write(TIMED_OUT)
            self.transport.close()

    def _release(self) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self.per_client[self._address] -= 1
            if self.per_client[self._address] <= 0:
                del self.per_client[self._address]


def _not_ready() -> bytes | None:
    return None


def guarded_http(
    settings: ServerSettings, health_body: Callable[[], bytes | None] = _not_ready
) -> type[GuardedHttp]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to this server's limits; ``health_body``
    gives the /health body (None: let the app answer)."""
    from server.guards import HostCheck

    budget = HandshakeBudget(settings.ws_handshakes_per_s, settings.ws_handshake_burst)
    host_check = HostCheck(_no_app, settings)
    bound = {
        "settings": settings, "per_client": Counter(), "handshakes": budget,
        "health_body": staticmethod(health_body), "host_allowed": staticmethod(host_check.allowed),
    }  # fmt: skip
    return type("GuardedHttpBound", (GuardedHttp,), bound)


async def _no_app(scope: Any, receive: Any, send: Any) -> None:  # HostCheck here only checks names
    raise RuntimeError("not an app")
