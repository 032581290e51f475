"""The OpenXR headset as a frame source: head, controllers, hands and gaze from a real runtime.

    open()   instance (XR_MND_headless when offered, XR_KHR_convert_timespec_time, hand tracking and eye gaze
             when offered) → system → session (no graphics binding when headless; otherwise a Vulkan device made
             through XR_KHR_vulkan_enable2, see capture/openxr_vulkan.py) → READY → begin → FOCUSED (bounded wait)
             → reference spaces (STAGE, else LOCAL) → action set (controllers, gaze) → hand trackers
    frame()  drain events → sample everything at the frame's time → samples per stream
    close()  request exit → end → destroy, releasing what exists, idempotent

Sample timing. Headless (Monado's XR_MND_headless) has no frame loop: xrWaitFrame predicts display time 0 and
xrBeginFrame fails, so each engine frame samples at its own due time (host monotonic, ≈ now) converted to XrTime
by the runtime — at the configured rate. A runtime that runs a frame loop (no headless) paces a FrameLoop thread,
which samples at each predicted display time. Either way a sample stores both: ``t`` host monotonic ns and
``st`` XrTime ns; ``clock_info()`` gives the measured offset, drift and the worst XrTime→monotonic round trip.

When the runtime ends the session (STOPPING/EXITING) the source calls ``on_stop(reason)`` — the engine's
``stop`` — and records untracked frames until the engine stops; when the session is lost it raises CaptureError
(see capture/openxr_session.py for the whole state machine).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import Field, StrictBool
from pydantic.dataclasses import dataclass

from capture.openxr_api import is_loss
from capture.openxr_probe import INSTALL_HINT, _quiet_stderr
from capture.openxr_session import FOCUSED, READY, RUNNING_STATES, FrameLoop, SessionMachine
from capture.openxr_streams import openxr_streams, pose_sample, untracked
from vrcap.errors import CaptureError, ConfigError
from vrcap.streams import StreamDescriptor

HEADLESS = "XR_MND_headless"
VULKAN = "XR_KHR_vulkan_enable2"  # the graphics binding for every other runtime (capture/openxr_vulkan.py)
HAND_TRACKING = "XR_EXT_hand_tracking"
EYE_GAZE = "XR_EXT_eye_gaze_interaction"
SPACES = ("stage", "local")


@dataclass
class OpenXRConfig:
    """How the OpenXR source records (``record.source: openxr``)."""

    rate_hz: float = Field(
        90.0,
        ge=1,
        le=1000,
        description="samples per second in headless mode; a paced runtime sets its display rate",
    )
    reference_space: str = Field(
        "stage",
        description='"stage" (room-scale, floor origin) or "local" (seated); stage falls back to local when '
        "the runtime has no stage, and the streams' frame says so",
    )
    controllers: StrictBool = Field(
        True, description="both controllers through an action set: grip + aim poses, trigger, buttons, ..."
    )
    hands: StrictBool = Field(
        True,
        description="26 hand joints per hand, when the runtime offers XR_EXT_hand_tracking and a tracker",
    )
    eye_gaze: StrictBool = Field(
        True,
        description="the gaze pose, when the runtime offers XR_EXT_eye_gaze_interaction and eye tracking",
    )
    headless: StrictBool = Field(
        True,
        description="use XR_MND_headless when offered (no frame loop, no graphics); false: Vulkan + frames",
    )
    ready_timeout_s: float = Field(
        5.0, gt=0, le=120, description="how long open() waits for the runtime to make the session ready"
    )
    app_name: str = Field("vrcap", description="what the runtime shows as the application")

    def __post_init__(self) -> None:
        """What a bound cannot say: the two spaces by name, and a non-empty name."""
        if self.reference_space not in SPACES:
            raise ConfigError(
                f"openxr.reference_space must be 'stage' (room-scale) or 'local' (seated), got {self.reference_space!r}"
            )
        if not self.app_name.strip():
            raise ConfigError("openxr.app_name must not be empty, e.g. openxr.app_name=vrcap")


class OpenXRHeadset:
    """Frame source reading a real OpenXR runtime. ``api`` is the pyopenxr boundary (tests pass a fake)."""

    name = "openxr"

    def __init__(
        self,
        config: OpenXRConfig | None = None,
        *,
        api: Any = None,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or OpenXRConfig()
        self.rate_hz = float(self.config.rate_hz)
        self.on_stop = on_stop  # the engine's stop(reason): called once when the runtime ends the session
        self.t0 = 0
        self._api = api
        self._instance: Any = None
        self._session: Any = None
        self._graphics: Any = None  # a VulkanBinding when the runtime is not headless
        self._machine: SessionMachine | None = None
        self._spaces: dict[str, Any] = {}
        self._input: Any = None
        self._hands: Any = None
        self._loop: FrameLoop | None = None
        self._streams: list[StreamDescriptor] = []
        self._stop_sent = False
        self.info: dict[str, Any] = {}  # runtime, system, extensions, what is recorded: for session.json
        self._clock: dict[str, Any] = {}
        self._frame_ns: deque[int] = deque(maxlen=1000)

    # --- open ----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Everything up to a running session; on any failure, releases what was made and raises CaptureError."""
        try:
            self._open()
        except CaptureError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            name = "a lost session" if is_loss(exc) else f"{type(exc).__name__}: {exc}"
            raise CaptureError(
                f"setting up the OpenXR session failed ({name}); restart the runtime and retry"
            ) from exc
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        api = self._api = self._api or _load_api()
        extensions = _guarded("list the runtime's extensions", api.instance_extensions)
        time_ext = api.time_extension()
        if time_ext not in extensions:
            raise CaptureError(
                f"the OpenXR runtime does not offer {time_ext}, which vrcap needs to put its poses on the host "
                f"clock; update the runtime, or {INSTALL_HINT}"
            )
        cfg = self.config
        headless = cfg.headless and HEADLESS in extensions
        if not headless and VULKAN not in extensions:
            raise CaptureError(
                f"the OpenXR runtime offers neither {HEADLESS} nor {VULKAN}, so vrcap cannot open a session "
                f"on it; update the runtime, or {INSTALL_HINT}"
            )
        wanted = [time_ext] + ([HEADLESS] if headless else [VULKAN])
        wanted += [HAND_TRACKING] * (cfg.hands and HAND_TRACKING in extensions)
        wanted += [EYE_GAZE] * (cfg.eye_gaze and EYE_GAZE in extensions)
        self._instance = _guarded("start", lambda: api.create_instance(cfg.app_name, wanted))
        runtime = api.runtime_name(self._instance)
        system = _guarded("find a headset", lambda: api.get_system(self._instance), runtime)
        sysinfo = api.system_info(self._instance, system, wanted)
        if not headless:
            try:
                self._graphics = api.make_graphics(self._instance, system, cfg.app_name)
            except Exception as exc:
                raise CaptureError(
                    f"{runtime} wants a graphics device for its session and making one through {VULKAN} failed "
                    f"({type(exc).__name__}: {exc}); update the GPU driver, or {INSTALL_HINT}"
                ) from exc
        try:
            self._session = api.create_session(self._instance, system, self._graphics)
        except Exception as exc:
            binding = "no graphics binding" if headless else "a Vulkan graphics binding"
            raise CaptureError(
                f"{runtime} refused an OpenXR session with {binding} ({type(exc).__name__}); "
                f"restart the runtime and retry, or {INSTALL_HINT}"
            ) from exc
        machine = self._machine = SessionMachine(api, self._instance, self._session)
        controllers, gaze = cfg.controllers, cfg.eye_gaze and sysinfo.eye_gaze and EYE_GAZE in wanted
        if controllers or gaze:
            from capture.openxr_input import ActionInput  # actions must be attached before the session runs

            self._input = ActionInput(api, self._instance, self._session, controllers=controllers, gaze=gaze)
        # A headless session runs as soon as it begins; a paced one only reaches SYNCHRONIZED once frames flow,
        # which the frame loop does from start(): here it is enough that READY began the session.
        wanted_states = RUNNING_STATES if headless else (READY, *RUNNING_STATES)
        if not machine.wait_for(wanted_states, cfg.ready_timeout_s):
            why = machine.lost or machine.ended
            raise CaptureError(
                f"{runtime} did not start the OpenXR session within {cfg.ready_timeout_s:g} s "
                f"(state {machine.state_name}{'; ' + why if why else ''}); "
                "put the headset on or wake it, check the runtime's window, then try again"
            )
        if headless:  # input needs focus, poses do not; a paced session gets it once its frame loop runs
            machine.wait_for((FOCUSED,), min(1.0, cfg.ready_timeout_s))
        if not headless:
            self.rate_hz = self._display_rate()
        space, note = self._make_spaces()
        hands = cfg.hands and sysinfo.hand_tracking and HAND_TRACKING in wanted
        if hands:
            from capture.openxr_hands import HandTracking

            try:
                self._hands = HandTracking(api, self._session)
            except Exception as exc:
                if is_loss(exc):
                    raise
                hands = False  # offered but refused: record without hands, and say why in session.json
                self.info["hands_unavailable"] = type(exc).__name__
        self._streams = openxr_streams(
            self.rate_hz,
            space,
            controllers=controllers,
            gaze=bool(gaze),
            hands=bool(hands),
            fallback_note=note,
        )
        if self._input is not None:
            self._input.refresh_profiles()
        self.info.update(
            runtime=runtime, system=sysinfo.name, extensions_enabled=wanted, headless=headless,
            reference_space=space, hands=bool(hands), eye_gaze=bool(gaze), controllers=controllers,
            system_hand_tracking=sysinfo.hand_tracking, system_eye_gaze=sysinfo.eye_gaze,
        )  # fmt: skip
        self._measure_clock(time.monotonic_ns())

    def _display_rate(self, frames: int = 9) -> float:
        """A paced runtime samples once per display frame: a few frames now tell its rate, before streams exist.

        The configured rate only applies to headless runtimes; a stream declaring 90 Hz while the runtime
        paces at 72 or 120 would make every rate check in `vrcap validate` wrong. The spacing of the predicted
        display times is what counts, once settled: Monado's null compositor predicts a 16.7 ms period on its
        first frame and spaces the next few irregularly before it paces at 50 ms; the last four spacings decide.
        """
        api, session = self._api, self._session
        times, reported = [], 0
        for _ in range(frames):
            display_time, reported = api.wait_frame(session)
            api.begin_frame(session)
            api.end_frame(session, display_time)
            times.append(display_time)
        steps = sorted(b - a for a, b in itertools.pairwise(times[-5:]) if b > a)
        period = steps[len(steps) // 2] if steps else reported
        self.info["display_period_ns"] = int(period)
        return 1e9 / period if period > 0 else float(self.config.rate_hz)

    def _make_spaces(self) -> tuple[str, str]:
        """The base space (STAGE, or LOCAL when STAGE is missing) and VIEW (the head)."""
        api, session = self._api, self._session
        offered = api.reference_space_types(session)
        space, note = self.config.reference_space, ""
        if space == "stage" and "STAGE" not in offered:
            space, note = "local", " — STAGE requested but the runtime has none"
        self._spaces["base"] = api.create_reference_space(session, space.upper())
        self._spaces["view"] = api.create_reference_space(session, "VIEW")
        return space, note

    def streams(self) -> list[StreamDescriptor]:
        if not self._streams:
            raise CaptureError("OpenXRHeadset.streams() is known after open(); open the source first")
        return list(self._streams)

    # --- recording -----------------------------------------------------------------------------------

    def start(self, t0_ns: int) -> None:
        self.t0 = t0_ns
        if not self.info.get("headless") and self._loop is None and self._machine is not None:
            self._loop = FrameLoop(self._api, self._machine, self._sample_at_display_time)
            self._loop.start()

    def frame(self, seq: int, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        started = time.perf_counter_ns()
        try:
            samples = self._frame(t_ns)
        except CaptureError:
            raise
        except Exception as exc:
            if is_loss(exc):
                assert self._machine is not None
                self._machine.lose(f"an OpenXR call failed with {type(exc).__name__}: the session is lost")
                self._raise_if_lost()
            raise CaptureError(f"reading the OpenXR runtime failed: {type(exc).__name__}: {exc}") from exc
        self._frame_ns.append(time.perf_counter_ns() - started)
        return samples

    def _frame(self, t_ns: int) -> dict[str, list[dict[str, Any]]]:
        machine = self._machine
        if machine is None:
            raise CaptureError("the OpenXR source is not open; call open() before frame()")
        if self._loop is None:
            machine.drain()  # events drained every frame (the frame loop drains its own)
        self._raise_if_lost()
        if self._loop is not None:
            if self._loop.error is not None:
                raise CaptureError(f"the OpenXR frame loop failed: {self._loop.error}") from self._loop.error
            if machine.ended:
                self._request_stop(machine.ended)
            self._measure_clock(t_ns)  # the loop stamps its own samples; this tracks offset and drift
            return self._loop.take()
        xr_time = self._api.to_xr_time(self._instance, t_ns)
        self._measure_clock(t_ns, xr_time)
        if machine.ended or not machine.running:
            if machine.ended:
                self._request_stop(machine.ended)
            return untracked(self._streams, t_ns, xr_time)
        if machine.profile_changed and self._input is not None:
            machine.profile_changed = False
            self._input.refresh_profiles()
        return self._sample(xr_time, t_ns)

    def _sample(self, xr_time: int, t: int) -> dict[str, list[dict[str, Any]]]:
        base = self._spaces["base"]
        try:
            head = self._api.locate(self._spaces["view"], base, xr_time)
        except Exception as exc:
            if is_loss(exc):
                raise
            head = None
        out = {"head": [pose_sample(head, t, xr_time)]}
        if self._input is not None:
            out.update(self._input.read(base, xr_time, t))
        if self._hands is not None:
            out.update(self._hands.read(base, xr_time, t))
        return out

    def _sample_at_display_time(self, display_time: int) -> dict[str, list[dict[str, Any]]]:
        """Frame-loop mode (on the loop's thread): everything at the predicted display time."""
        machine = self._machine
        if machine is not None and machine.profile_changed and self._input is not None:
            machine.profile_changed = False
            self._input.refresh_profiles()
        t = self._api.from_xr_time(self._instance, display_time)
        return self._sample(display_time, t)

    def _raise_if_lost(self) -> None:
        if self._machine is not None and self._machine.lost:
            raise CaptureError(
                f"{self._machine.lost}; the recording was stopped and what was recorded is kept. "
                "Restart the runtime / reconnect the headset, then record again"
            )

    def _request_stop(self, reason: str) -> None:
        if self._stop_sent:
            return
        self._stop_sent = True
        if self.on_stop is None:
            raise CaptureError(f"{reason}; the recording was stopped and what was recorded is kept")
        self.on_stop(reason)

    # --- clock ---------------------------------------------------------------------------------------

    def _measure_clock(self, mono_ns: int, xr_time: int | None = None) -> None:
        """Offset monotonic − XrTime now, its drift since the first measurement, the worst round trip."""
        api, instance = self._api, self._instance
        if xr_time is None:
            xr_time = api.to_xr_time(instance, mono_ns)
        back = api.from_xr_time(instance, xr_time)
        c = self._clock
        offset = mono_ns - xr_time
        c.setdefault("first", (mono_ns, offset))
        c["last"] = (mono_ns, offset)
        c["round_trip_max_ns"] = max(c.get("round_trip_max_ns", 0), abs(back - mono_ns))

    def clock_info(self) -> dict[str, Any]:
        c = self._clock
        info: dict[str, Any] = {
            "type": "xr_time",
            "unit": "ns",
            "conversion": self._api.time_extension() if self._api is not None else "",
            "sampling": "frame loop: predicted display time"
            if self._loop is not None
            else "headless: each frame's host time converted to XrTime",
            "source": dict(self.info),
        }
        if "last" in c:
            (m0, o0), (m1, o1) = c["first"], c["last"]
            info["mono_minus_xr_ns"] = o1
            info["offset_ms"] = o1 / 1e6
            info["drift_ppm"] = (o1 - o0) / (m1 - m0) * 1e6 if m1 > m0 else 0.0
            info["round_trip_max_ms"] = c["round_trip_max_ns"] / 1e6
        if self._machine is not None:
            info["session_states"] = [list(t) for t in self._machine.transitions]
        if self._input is not None:
            info["source"]["interaction_profiles"] = dict(self._input.profiles)
            info["source"]["bound_profiles"] = list(self._input.bound_profiles)
        return info

    def live_stats(self) -> dict[str, Any]:
        frame_ms = sorted(self._frame_ns)
        stats: dict[str, Any] = {"session_state": self._machine.state_name if self._machine else "closed"}
        if frame_ms:
            stats["frame_ms_p99"] = frame_ms[int(len(frame_ms) * 0.99)] / 1e6
            stats["frame_ms_max"] = frame_ms[-1] / 1e6
        errors = sum(x.errors for x in (self._input, self._hands) if x is not None)
        stats["read_errors"] = errors
        return stats

    # --- close ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release everything that exists, in reverse order; safe to call twice and after a failed open."""
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        for part in (self._hands, self._input):
            if part is not None:
                part.close()
        self._hands = self._input = None
        api = self._api
        for space in self._spaces.values():
            _quietly(api.destroy_space, space)
        self._spaces = {}
        if self._session is not None:
            if self._machine is not None:
                _quietly(self._machine.shut_down)
            _quietly(api.destroy_session, self._session)
            self._session = None
        if self._graphics is not None:  # after the session that used it, before the instance that made it
            _quietly(self._graphics.close)
            self._graphics = None
        if self._instance is not None:
            _quietly(api.destroy_instance, self._instance)
            self._instance = None


def _load_api() -> Any:
    from capture.openxr_api import XrApi

    try:
        return XrApi()
    except Exception as exc:  # pyopenxr missing, or its bundled loader cannot be loaded
        raise CaptureError(
            f"pyopenxr cannot be imported ({exc}); pip install pyopenxr, or {INSTALL_HINT}"
        ) from exc


def _guarded(doing: str, call: Callable[[], Any], runtime: str = "") -> Any:
    """Run a call that talks to the loader or runtime; its failure becomes one line saying what to do."""
    try:
        with _quiet_stderr():  # the loader prints its own multi-line errors on fd 2; ours says it better
            return call()
    except Exception as exc:
        name = type(exc).__name__
        if name == "RuntimeUnavailableError":
            raise CaptureError(f"no OpenXR runtime found: {INSTALL_HINT}") from exc
        if name == "FormFactorUnavailableError":
            raise CaptureError(
                f"{runtime or 'the OpenXR runtime'} is running but sees no headset: connect it and power it on "
                "(Quest: enable Link / Air Link first), or record without a headset with --source sim"
            ) from exc
        raise CaptureError(f"the OpenXR runtime refused to {doing} ({name}: {exc}); {INSTALL_HINT}") from exc


def _quietly(call: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(Exception):  # closing releases what it can: the runtime may already be gone
        call(*args)
