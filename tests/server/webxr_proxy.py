"""A WebSocket proxy that delays every message by 20 ± 10 ms, each direction on its own: Wi-Fi jitter.

Each direction's delay is a random process: a fresh uniform 10-30 ms draw every 50 ms, linear in between.
Why not an independent draw per message: order must be kept (TCP keeps it), and with independent draws a
message that drew a short delay behind one that drew a long delay has to wait for it — on the busy direction
(frames, 50 a second, upstream) nearly every ping would, and the jitter would no longer be symmetric (it
biased the fitted offset by ~9 ms). The process's slope is at most 20 ms / 50 ms < 1, so delivery times only
grow and no message ever waits for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from typing import Any

import websockets


class JitterProxy:
    """``with JitterProxy(upstream_base) as proxy:`` — ``proxy.base`` replaces ``ws://host:port`` of the server."""

    def __init__(
        self, upstream_base: str, delay_ms: float = 20.0, jitter_ms: float = 10.0, seed: int = 16
    ) -> None:
        self.upstream = upstream_base
        self.low, self.high = (delay_ms - jitter_ms) / 1e3, (delay_ms + jitter_ms) / 1e3
        self.random = random.Random(seed)
        self.delays: list[float] = []  # the delay of every message, s
        self.knot_s = 0.05
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jitter-proxy", daemon=True)
        self.base = ""

    def __enter__(self) -> JitterProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with websockets.serve(self._client, "127.0.0.1", 0, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.base = f"ws://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
            server.close()  # closes the pages' connections; their handlers then close the upstream ones
            await server.wait_closed()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 10)

    async def _client(self, page: Any) -> None:
        path = page.request.path
        async with websockets.connect(self.upstream + path, max_size=None) as server:
            pumps = [
                asyncio.create_task(self._pump(page, server)),
                asyncio.create_task(self._pump(server, page)),
            ]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for end in (page, server):
                with contextlib.suppress(Exception):
                    await end.close(server.close_code or 1000, server.close_reason or "")

    def _delay_process(self) -> Any:
        """delay(t): piecewise linear through a uniform draw every ``knot_s`` seconds."""
        start = time.monotonic()
        knots: list[float] = []

        def delay(t: float) -> float:
            x = (t - start) / self.knot_s
            while len(knots) < int(x) + 2:
                knots.append(self.random.uniform(self.low, self.high))
            i = int(x)
            return knots[i] + (knots[i + 1] - knots[i]) * (x - i)

        return delay

    async def _pump(self, source: Any, sink: Any) -> None:
        queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        delay_at = self._delay_process()

        async def deliver() -> None:
            while True:
                due, message = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await sink.send(message)

        sender = asyncio.create_task(deliver())
        try:
            async for message in source:
                now = time.monotonic()
                delay = delay_at(now)
                self.delays.append(delay)
                queue.put_nowait((now + delay, message))
        finally:
            while not queue.empty() and not sender.done():
                await asyncio.sleep(0.01)
            sender.cancel()
