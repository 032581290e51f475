"""The OpenXR session lifecycle, driven by the runtime's events, and the frame loop for runtimes that pace us.

    IDLE ──► READY ──(we call xrBeginSession)──► SYNCHRONIZED ──► VISIBLE ──► FOCUSED
                                                     ▲                          │ (focus lost: input inactive,
                                                     └──────────────────────────┘  poses still valid)
    any running state ──► STOPPING ──(we call xrEndSession)──► IDLE ──► EXITING      the runtime ends it
    any state ──► LOSS_PENDING                                                      the runtime or device is gone

What vrcap does with each, as the recording sees it:
- READY: begin the session (PRIMARY_STEREO, no graphics in headless mode); SYNCHRONIZED/VISIBLE/FOCUSED only
  update the state (input actions read as inactive unless FOCUSED, and are stored as inactive, not as zeros).
- STOPPING and EXITING: the runtime asks us to stop (the user quit from the runtime's menu, the runtime shuts
  down). A *clean stop*: the session ends, ``ended`` says why, and the source asks the engine to stop the
  recording with that reason; frames until then are stored as untracked.
- LOSS_PENDING, an instance-loss event, or a call failing with a loss error: the session is gone for good.
  ``lost`` says why; the source raises CaptureError, so the engine finalizes the session with the reason as an
  error and the CLI prints one line. What was recorded before stays valid.
Events are drained every frame (``drain``): the queue is small, and a lost SESSION_STATE_CHANGED means a stuck app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from capture.openxr_api import SESSION_STATES, XrEvent, is_loss

IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, STOPPING, LOSS_PENDING, EXITING = range(1, 9)
RUNNING_STATES = (SYNCHRONIZED, VISIBLE, FOCUSED)
MAX_EVENTS_PER_DRAIN = 64  # a runtime flooding events must not stall a frame; the rest wait for the next one
MAX_TRANSITIONS_KEPT = 256


def state_name(state: int) -> str:
    return SESSION_STATES[state] if 0 <= state < len(SESSION_STATES) else f"state {state}"


class SessionMachine:
    """Follows the session's state from its events and makes the calls each state requires."""

    def __init__(self, api: Any, instance: Any, session: Any) -> None:
        self.api = api
        self.instance = instance
        self.session = session
        self.state = 0  # UNKNOWN until the runtime's first event (IDLE)
        self.running = False  # between our xrBeginSession and xrEndSession
        self.ended: str | None = None  # why the runtime stopped the session (a clean stop)
        self.lost: str | None = None  # why the session is gone (an error)
        self.profile_changed = False  # the interaction profile of some hand changed: re-read it
        self.events = 0
        self.transitions: list[tuple[int, str]] = []  # (host monotonic ns, state name), for session.json

    def drain(self) -> int:
        """Handle every queued event (at most MAX_EVENTS_PER_DRAIN); how many there were."""
        count = 0
        while count < MAX_EVENTS_PER_DRAIN:
            try:
                event = self.api.poll_event(self.instance)
            except Exception as exc:
                if is_loss(exc):
                    self.lose(f"polling events failed with {type(exc).__name__}")
                    break
                raise
            if event is None:
                break
            count += 1
            self.handle(event)
        self.events += count
        return count

    def handle(self, event: XrEvent) -> None:
        if event.kind == "session_state":
            self._enter(event.state)
        elif event.kind == "instance_loss":
            self.lose("the runtime announced the instance is going away (INSTANCE_LOSS_PENDING)")
        elif event.kind == "interaction_profile":
            self.profile_changed = True

    def _enter(self, state: int) -> None:
        self.state = state
        if len(self.transitions) < MAX_TRANSITIONS_KEPT:
            self.transitions.append((time.monotonic_ns(), state_name(state)))
        if state == READY and not self.running and self.ended is None:
            self.api.begin_session(self.session)
            self.running = True
        elif state == STOPPING:
            self._end_session()
            self.ended = self.ended or "the OpenXR runtime stopped the session (STOPPING)"
        elif state == EXITING:
            self.ended = self.ended or "the OpenXR runtime ended the session (EXITING)"
        elif state == LOSS_PENDING:
            self.lose("the OpenXR session was lost (LOSS_PENDING): the runtime or the headset went away")

    def _end_session(self) -> None:
        if self.running:
            self.running = False
            self.api.end_session(self.session)

    def lose(self, reason: str) -> None:
        self.running = False  # a lost session cannot be ended, only destroyed
        self.lost = self.lost or reason

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    def wait_for(self, states: tuple[int, ...], timeout_s: float) -> bool:
        """Drain events until the state is one of ``states``; False on timeout, loss or a runtime stop."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.drain()
            if self.state in states:
                return True
            if self.lost or self.ended or time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def shut_down(self, timeout_s: float = 0.5) -> None:
        """Ask the runtime to end a running session, and end it when it says STOPPING (bounded wait)."""
        if not self.running or self.lost:
            return
        self.ended = self.ended or "stopped by vrcap"
        self.api.request_exit_session(self.session)
        self.wait_for((STOPPING, IDLE, EXITING), timeout_s)
        self._end_session()  # the runtime never said STOPPING: end anyway, destroying follows


class FrameLoop:
    """wait_frame → begin_frame → sample at the predicted display time → end_frame, on its own thread.

    Only for runtimes that pace frames (not headless): xrWaitFrame blocks up to a display period, which the
    engine's asyncio thread must never do. The loop thread owns the session while it runs (events included);
    the engine's ``frame()`` takes whatever samples the loop produced since the previous frame.
    """

    def __init__(
        self, api: Any, machine: SessionMachine, sample: Callable[[int], dict[str, list[dict[str, Any]]]]
    ) -> None:
        self.api = api
        self.machine = machine
        self.sample = sample
        self.error: BaseException | None = None
        self.frames = 0
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vrcap-openxr-frames", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def take(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            out, self._pending = self._pending, {}
        return out

    def _run(self) -> None:
        session = self.machine.session
        try:
            while not self._stop.is_set():
                self.machine.drain()
                if not self.machine.running:
                    if self.machine.lost or self.machine.ended:
                        return
                    time.sleep(0.005)  # IDLE/READY before the next begin: nothing to pace
                    continue
                display_time, _ = self.api.wait_frame(session)
                self.api.begin_frame(session)
                samples = self.sample(display_time)
                self.api.end_frame(session, display_time)
                self.frames += 1
                with self._lock:
                    for name, items in samples.items():
                        self._pending.setdefault(name, []).extend(items)
        except Exception as exc:
            if is_loss(exc):
                self.machine.lose(f"the frame loop failed with {type(exc).__name__}: the session is lost")
            else:
                self.error = exc
