"""`GET /api/v1/health` is answered below the app (server/connlimits.py), with the route's body and checks.

Against a real `vrcap serve`: a plain probe is answered without uvicorn's ASGI response path (no ``server:``
header, which uvicorn adds to every app response), keep-alive works, and anything unusual (a query, a foreign
Host, HTTP/1.0) still gets the app's own answer.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.server.live import ServeProcess

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)


def _exchange(server: ServeProcess, requests: list[bytes]) -> list[bytes]:
    """Send each request on one connection and read its whole answer (Content-Length framed)."""
    answers = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += sock.recv(4096)
            answers.append(head + b"\r\n\r\n" + body)
    return answers


def _get(server: ServeProcess, target: str, host: str | None = None, version: str = "1.1") -> bytes:
    host = host or f"127.0.0.1:{server.port}"
    return f"GET {target} HTTP/{version}\r\nHost: {host}\r\n\r\n".encode()


def test_a_plain_probe_is_answered_below_the_app_with_the_routes_body(serve: ServeProcess) -> None:
    fast, again, routed = _exchange(
        serve,
        [_get(serve, "/api/v1/health"), _get(serve, "/api/v1/health"), _get(serve, "/api/v1/health?x=1")],
    )
    for answer in (fast, again, routed):
        assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"server: uvicorn" not in fast.lower() and b"server: uvicorn" in routed.lower()
    body = json.loads(fast.partition(b"\r\n\r\n")[2])
    assert body == json.loads(routed.partition(b"\r\n\r\n")[2]) and body["status"] == "ok"
    assert body["recording"] is False


def test_a_foreign_host_http_1_0_or_an_origin_goes_through_the_app(serve: ServeProcess) -> None:
    (foreign,) = _exchange(serve, [_get(serve, "/api/v1/health", host="evil.example")])
    assert (
        foreign.startswith(b"HTTP/1.1 400")
        and json.loads(foreign.partition(b"\r\n\r\n")[2])["error"] == "bad-host"
    )
    (old,) = _exchange(serve, [_get(serve, "/api/v1/health", version="1.0")])
    assert old.startswith(b"HTTP/1.1 200") and b"server: uvicorn" in old.lower()
    cross = _get(serve, "/api/v1/health").replace(b"\r\n\r\n", b"\r\nOrigin: http://127.0.0.1:1\r\n\r\n")
    (browser,) = _exchange(serve, [cross])  # CORS (when configured) is the app's: the route answers
    assert browser.startswith(b"HTTP/1.1 200") and b"server: uvicorn" in browser.lower()
