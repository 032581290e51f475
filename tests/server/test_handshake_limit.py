"""WebSocket handshakes per client address are budgeted (issue 12: 300 token-less clients reconnecting).

Against a real `vrcap serve` on loopback: a burst over the budget is answered 429 with Retry-After before any
WebSocket exists, other addresses and plain HTTP are not affected, and the budget refills with time.
"""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator

import pytest

from server.connlimits import PRUNE_AT, HandshakeBudget
from tests.server.live import ServeProcess

pytestmark = pytest.mark.realtime  # timing on the wall clock: run alone (tools/ci/run-tests.sh)

RATE, BURST = 2.0, 5
LIVE = "/api/v1/recordings/live"


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(
        tmp_path_factory.mktemp("handshakes"), f"ws_handshakes_per_s={RATE}", f"ws_handshake_burst={BURST}"
    ) as server:
        yield server


def _handshake(server: ServeProcess, source: str = "127.0.0.1") -> bytes:
    """The server's answer to one WebSocket upgrade request (its head, and a refusal's body)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {LIVE} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data or (data.startswith(b"HTTP/1.1 429") and not data.endswith(b"}")):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _health(server: ServeProcess) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        return sock.recv(4096)


def test_a_handshake_burst_over_the_budget_gets_429_and_other_addresses_do_not(
    budgeted: ServeProcess,
) -> None:
    time.sleep(BURST / RATE)  # a full bucket, whatever the module did before
    started = time.monotonic()
    answers = [_handshake(budgeted) for _ in range(12)]
    elapsed = time.monotonic() - started
    accepted = [a for a in answers if a.startswith(b"HTTP/1.1 101")]
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
    assert len(accepted) + len(refused) == 12, [a[:20] for a in answers]
    # The burst, plus what the budget refilled while the 12 were made (~0 on a quiet machine).
    assert BURST <= len(accepted) <= BURST + int(elapsed * RATE), (len(accepted), elapsed)
    assert answers[:BURST] == accepted[:BURST]  # the first ones got through, the rest were refused
    assert b'"error":"too-many-handshakes"' in refused[0] and b"retry-after: 1\r\n" in refused[0].lower()
    assert _handshake(budgeted, "127.0.0.2").startswith(b"HTTP/1.1 101")  # another client's own budget
    assert _health(budgeted).startswith(b"HTTP/1.1 200")  # plain HTTP from the same address is not budgeted
    time.sleep(1.0 / RATE + 0.1)  # one token back
    assert _handshake(budgeted).startswith(b"HTTP/1.1 101")


def test_the_budget_refills_at_its_rate_and_forgets_full_buckets() -> None:
    now = [0.0]
    budget = HandshakeBudget(rate=4.0, burst=3, clock=lambda: now[0])
    assert [budget.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.take("a") == pytest.approx(0.25)  # one token takes 1/4 s to come back
    now[0] = 0.25
    assert budget.take("a") == 0.0 and budget.take("a") > 0
    assert budget.take("b") == 0.0  # addresses do not share a bucket
    now[0] = 10.0  # every bucket refilled: the next new address prunes them all
    for i in range(PRUNE_AT):
        budget.take(f"10.0.{i // 256}.{i % 256}")
    assert len(budget._buckets) <= PRUNE_AT
