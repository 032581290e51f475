"""The pyopenxr calls vrcap makes, behind one small object.

Why a boundary: the real runtime (Monado) only runs inside a Debian 13 chroot, and even there it exercises no hand
tracking, no eye gaze, no session loss. Every ``xr.*`` call of the OpenXR source goes through ``XrApi``, so the
host tests swap in a fake with the same methods and drive those paths; everything above this module is the same
code in both cases. Methods return plain numbers where that keeps fakes short (poses, action states, events);
the hand-joint call takes the caller's own 26-joint struct, because that allocation is the point (see
``locate_hand_joints``).

Errors are pyopenxr's own exceptions; ``is_loss`` tells the ones that mean "the session or instance is gone".
``import xr`` happens in ``XrApi()``, never at import of this module: pyopenxr bundles a 261 MB loader.
"""

from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import dataclass
from typing import Any

# XrSessionState values (OpenXR 1.0 spec, 9.3): fakes and the state machine use the numbers, not pyopenxr's enum.
SESSION_STATES = (
    "UNKNOWN",
    "IDLE",
    "READY",
    "SYNCHRONIZED",
    "VISIBLE",
    "FOCUSED",
    "STOPPING",
    "LOSS_PENDING",
    "EXITING",
)
LOSS_ERRORS = frozenset(
    {"SessionLossPending", "SessionLostError", "InstanceLossPending", "InstanceLostError"}
)
HAND_JOINT_COUNT = 26  # XR_HAND_JOINT_COUNT_EXT: the DEFAULT joint set


def is_loss(exc: BaseException) -> bool:
    """True when a call failed because the session or the instance is lost (or about to be)."""
    return type(exc).__name__ in LOSS_ERRORS


@dataclass(frozen=True)
class XrEvent:
    """One event from ``xrPollEvent``, decoded: ``kind`` is one of session_state, instance_loss,
    interaction_profile, events_lost, other; ``state`` an XrSessionState number for session_state events."""

    kind: str
    state: int = 0
    time: int = 0


@dataclass(frozen=True)
class SystemInfo:
    name: str
    hand_tracking: bool
    eye_gaze: bool


@dataclass(frozen=True)
class Location:
    """A located space: XrSpaceLocationFlags, XrSpaceVelocityFlags and px py pz qx qy qz qw vx vy vz wx wy wz."""

    flags: int
    velocity_flags: int
    values: tuple[float, ...]


class XrApi:
    """The real thing: thin wrappers over pyopenxr, with the per-call function-pointer look-ups cached."""

    def __init__(self) -> None:
        import xr

        self.xr = xr
        self._fns: dict[str, Any] = {}
        self._win_offset: tuple[int, int, int] | None = (
            None  # (qpc ticks, mono ns, ticks per s), Windows only
        )

    # --- instance and system -------------------------------------------------------------------------

    def instance_extensions(self) -> list[str]:
        return sorted(_text(e.extension_name) for e in self.xr.enumerate_instance_extension_properties())

    def create_instance(self, app_name: str, extensions: list[str]) -> Any:
        xr = self.xr
        info = xr.ApplicationInfo(
            application_name=app_name, engine_name="vrcap", api_version=xr.XR_CURRENT_API_VERSION
        )
        return xr.create_instance(
            xr.InstanceCreateInfo(application_info=info, enabled_extension_names=extensions)
        )

    def runtime_name(self, instance: Any) -> str:
        props = self.xr.get_instance_properties(instance)
        return f"{_text(props.runtime_name)} {self.xr.Version(props.runtime_version)}"

    def get_system(self, instance: Any) -> Any:
        return self.xr.get_system(
            instance, self.xr.SystemGetInfo(form_factor=self.xr.FormFactor.HEAD_MOUNTED_DISPLAY)
        )

    def system_info(self, instance: Any, system: Any, extensions: list[str]) -> SystemInfo:
        """Name and what the *system* supports: an offered extension may still have no device behind it."""
        xr = self.xr
        hand = xr.SystemHandTrackingPropertiesEXT()
        eye = xr.SystemEyeGazeInteractionPropertiesEXT()
        chain = None  # chaining a struct of an extension that is not enabled is invalid usage
        if "XR_EXT_hand_tracking" in extensions:
            hand.next, chain = chain, ctypes.cast(ctypes.pointer(hand), ctypes.c_void_p)
        if "XR_EXT_eye_gaze_interaction" in extensions:
            eye.next, chain = chain, ctypes.cast(ctypes.pointer(eye), ctypes.c_void_p)
        props = xr.SystemProperties(next=chain)
        result = xr.check_result(
            xr.raw_functions.xrGetSystemProperties(instance, system, ctypes.byref(props))
        )
        if result.is_exception():
            raise result
        return SystemInfo(
            _text(props.system_name),
            bool(hand.supports_hand_tracking),
            bool(eye.supports_eye_gaze_interaction),
        )

    def destroy_instance(self, instance: Any) -> None:
        self.xr.destroy_instance(instance)

    # --- session -------------------------------------------------------------------------------------

    def make_graphics(self, instance: Any, system: Any, app_name: str) -> Any:
        """A Vulkan device for runtimes without XR_MND_headless (XR_KHR_vulkan_enable2); ``.close()`` frees it."""
        from capture.openxr_vulkan import VulkanBinding

        return VulkanBinding(self.xr, instance, system, app_name)

    def create_session(self, instance: Any, system: Any, graphics: Any = None) -> Any:
        """Headless (XR_MND_headless) needs no binding; every other runtime gets ``graphics.binding``."""
        binding = None if graphics is None else ctypes.cast(ctypes.pointer(graphics.binding), ctypes.c_void_p)
        info = self.xr.SessionCreateInfo(system_id=system, next=binding)
        return self.xr.create_session(instance, info)

    def begin_session(self, session: Any) -> None:
        view = self.xr.ViewConfigurationType.PRIMARY_STEREO
        self.xr.begin_session(session, self.xr.SessionBeginInfo(primary_view_configuration_type=view))

    def end_session(self, session: Any) -> None:
        self.xr.end_session(session)

    def request_exit_session(self, session: Any) -> None:
        self.xr.request_exit_session(session)

    def destroy_session(self, session: Any) -> None:
        self.xr.destroy_session(session)

    def poll_event(self, instance: Any) -> XrEvent | None:
        """The next event, or None when the queue is empty."""
        xr = self.xr
        try:
            buffer = xr.poll_event(instance)
        except xr.EventUnavailable:
            return None
        kind = xr.StructureType(buffer.type)
        if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
            event = ctypes.cast(
                ctypes.byref(buffer), ctypes.POINTER(xr.EventDataSessionStateChanged)
            ).contents
            return XrEvent("session_state", _int(event.state), _int(event.time))
        names = {
            xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING: "instance_loss",
            xr.StructureType.EVENT_DATA_INTERACTION_PROFILE_CHANGED: "interaction_profile",
            xr.StructureType.EVENT_DATA_EVENTS_LOST: "events_lost",
        }
        return XrEvent(names.get(kind, "other"))

    # --- frames (only when the runtime runs a frame loop, i.e. not headless) -------------------------

    def wait_frame(self, session: Any) -> tuple[int, int]:
        """Blocks until the runtime wants the next frame; (predicted display time, period), XrTime ns."""
        state = self.xr.wait_frame(session)
        return _int(state.predicted_display_time), _int(state.predicted_display_period)

    def begin_frame(self, session: Any) -> None:
        self.xr.begin_frame(session)

    def end_frame(self, session: Any, display_time: int) -> None:
        """A frame with no layers: we render nothing, but the runtime paces us only if frames end."""
        info = self.xr.FrameEndInfo(
            display_time=display_time, environment_blend_mode=self.xr.EnvironmentBlendMode.OPAQUE
        )
        self.xr.end_frame(session, info)

    # --- spaces --------------------------------------------------------------------------------------

    def reference_space_types(self, session: Any) -> list[str]:
        return [self.xr.ReferenceSpaceType(int(s)).name for s in self.xr.enumerate_reference_spaces(session)]

    def create_reference_space(self, session: Any, kind: str) -> Any:
        info = self.xr.ReferenceSpaceCreateInfo(reference_space_type=self.xr.ReferenceSpaceType[kind])
        return self.xr.create_reference_space(session, info)

    def create_action_space(self, session: Any, action: Any, subaction_path: int) -> Any:
        info = self.xr.ActionSpaceCreateInfo(action=action, subaction_path=subaction_path)
        return self.xr.create_action_space(session, info)

    def destroy_space(self, space: Any) -> None:
        self.xr.destroy_space(space)

    def locate(self, space: Any, base: Any, xr_time: int) -> Location:
        location, velocity = self.xr.locate_space_with_velocity(space, base, xr_time)
        p, q = location.pose.position, location.pose.orientation
        v, w = velocity.linear_velocity, velocity.angular_velocity
        return Location(
            int(location.location_flags),
            int(velocity.velocity_flags),
            (p.x, p.y, p.z, q.x, q.y, q.z, q.w, v.x, v.y, v.z, w.x, w.y, w.z),
        )

    # --- actions -------------------------------------------------------------------------------------

    def path(self, instance: Any, text: str) -> int:
        return _int(self.xr.string_to_path(instance, text))

    def path_text(self, instance: Any, path: int) -> str:
        return "" if not path else str(self.xr.path_to_string(instance, path))

    def create_action_set(self, instance: Any, name: str, description: str) -> Any:
        info = self.xr.ActionSetCreateInfo(action_set_name=name, localized_action_set_name=description)
        return self.xr.create_action_set(instance, info)

    def destroy_action_set(self, action_set: Any) -> None:
        self.xr.destroy_action_set(action_set)

    def create_action(
        self, action_set: Any, name: str, kind: str, description: str, subpaths: list[int]
    ) -> Any:
        """``kind``: boolean, float, vector2f or pose (XrActionType without the suffix)."""
        xr = self.xr
        types = {
            "boolean": xr.ActionType.BOOLEAN_INPUT,
            "float": xr.ActionType.FLOAT_INPUT,
            "vector2f": xr.ActionType.VECTOR2F_INPUT,
            "pose": xr.ActionType.POSE_INPUT,
        }
        info = xr.ActionCreateInfo(
            action_name=name,
            action_type=types[kind],
            subaction_paths=(ctypes.c_uint64 * len(subpaths))(*subpaths) if subpaths else None,
            localized_action_name=description,
        )
        return xr.create_action(action_set, info)

    def suggest_bindings(self, instance: Any, profile: int, bindings: list[tuple[Any, int]]) -> None:
        """Raises when the runtime rejects the profile or a path (e.g. PathUnsupportedError)."""
        xr = self.xr
        array = (xr.ActionSuggestedBinding * len(bindings))(
            *(xr.ActionSuggestedBinding(action=a, binding=p) for a, p in bindings)
        )
        info = xr.InteractionProfileSuggestedBinding(interaction_profile=profile, suggested_bindings=array)
        xr.suggest_interaction_profile_bindings(instance, info)

    def attach_action_sets(self, session: Any, action_sets: list[Any]) -> None:
        array = (self.xr.ActionSet * len(action_sets))(*action_sets)
        self.xr.attach_session_action_sets(session, self.xr.SessionActionSetsAttachInfo(action_sets=array))

    def sync_actions(self, session: Any, action_set: Any) -> bool:
        """False when the session is not focused: every action then reads as inactive."""
        xr = self.xr
        active = (xr.ActiveActionSet * 1)(
            xr.ActiveActionSet(action_set=action_set, subaction_path=xr.NULL_PATH)
        )
        try:
            xr.sync_actions(session, xr.ActionsSyncInfo(active_action_sets=active))
        except xr.SessionNotFocused:
            return False
        return True

    def action_state(
        self, session: Any, action: Any, kind: str, subaction_path: int
    ) -> tuple[bool, float, float]:
        """(active, value, second value): booleans as 0/1, vector2f as (x, y), pose: (active, 0, 0)."""
        xr = self.xr
        info = xr.ActionStateGetInfo(action=action, subaction_path=subaction_path)
        if kind == "float":
            s = xr.get_action_state_float(session, info)
            return bool(s.is_active), float(s.current_state), 0.0
        if kind == "boolean":
            b = xr.get_action_state_boolean(session, info)
            return bool(b.is_active), float(bool(b.current_state)), 0.0
        if kind == "vector2f":
            v = xr.get_action_state_vector2f(session, info)
            return bool(v.is_active), float(v.current_state.x), float(v.current_state.y)
        pose = xr.get_action_state_pose(session, info)
        return bool(pose.is_active), 0.0, 0.0

    def current_interaction_profile(self, instance: Any, session: Any, top_level_path: int) -> str:
        state = self.xr.get_current_interaction_profile(session, top_level_path)
        return self.path_text(instance, _int(state.interaction_profile))

    # --- hands ---------------------------------------------------------------------------------------

    def create_hand_tracker(self, session: Any, hand: str) -> Any:
        xr = self.xr
        info = xr.HandTrackerCreateInfoEXT(
            hand=xr.HandEXT.LEFT if hand == "left" else xr.HandEXT.RIGHT,
            hand_joint_set=xr.HandJointSetEXT.DEFAULT,
        )
        return xr.create_hand_tracker_ext(session, info)

    def destroy_hand_tracker(self, tracker: Any) -> None:
        self.xr.destroy_hand_tracker_ext(tracker)

    def locate_hand_joints(self, tracker: Any, base: Any, xr_time: int, locations: Any) -> None:
        """Fill the caller's ``HandJointLocationsEXT`` (26 joints allocated by the caller).

        Not ``xr.locate_hand_joints_ext``: that wrapper passes a fresh ``HandJointLocationsEXT()`` whose joint array
        is empty (count 0, NULL), which the runtime rejects or leaves unfilled: the joints never arrive.
        """
        xr = self.xr
        fn = self._fn(tracker.instance, "xrLocateHandJointsEXT", xr.PFN_xrLocateHandJointsEXT)
        info = xr.HandJointsLocateInfoEXT(base_space=base, time=xr_time)
        result = xr.check_result(fn(tracker, ctypes.byref(info), ctypes.byref(locations)))
        if result.is_exception():
            raise result

    # --- time ----------------------------------------------------------------------------------------

    def time_extension(self) -> str:
        """The extension that maps XrTime to the host's monotonic clock on this platform."""
        if sys.platform == "win32":
            return "XR_KHR_win32_convert_performance_counter_time"
        return "XR_KHR_convert_timespec_time"

    def to_xr_time(self, instance: Any, mono_ns: int) -> int:
        """Host ``time.monotonic_ns()`` → XrTime, through the runtime's own conversion."""
        xr = self.xr
        if sys.platform == "win32":
            return self._win_to_xr(instance, mono_ns)
        ts = xr.timespec(mono_ns // 1_000_000_000, mono_ns % 1_000_000_000)
        out = xr.Time()
        fn = self._fn(instance, "xrConvertTimespecTimeToTimeKHR", xr.PFN_xrConvertTimespecTimeToTimeKHR)
        result = xr.check_result(fn(instance, ctypes.byref(ts), ctypes.byref(out)))
        if result.is_exception():
            raise result
        return int(out.value)

    def from_xr_time(self, instance: Any, xr_time: int) -> int:
        """XrTime → host ``time.monotonic_ns()``."""
        xr = self.xr
        if sys.platform == "win32":
            return self._win_from_xr(instance, xr_time)
        ts = xr.timespec()
        fn = self._fn(instance, "xrConvertTimeToTimespecTimeKHR", xr.PFN_xrConvertTimeToTimespecTimeKHR)
        result = xr.check_result(fn(instance, xr_time, ctypes.byref(ts)))
        if result.is_exception():
            raise result
        return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)

    def _fn(self, instance: Any, name: str, prototype: Any) -> Any:
        """An extension function pointer, looked up once: pyopenxr's wrappers look it up on every call."""
        fn = self._fns.get(name)
        if fn is None:
            fn = ctypes.cast(self.xr.get_instance_proc_addr(instance, name), prototype)
            self._fns[name] = fn
        return fn

    # Windows: XrTime <-> QueryPerformanceCounter ticks; ticks <-> monotonic_ns by one measured pair, since
    # CPython's monotonic clock on Windows is QPC-based (3.13+) or GetTickCount64 (older): the pair re-measured
    # at each open keeps either honest. Not exercised here (no Windows runtime); kept small on purpose.

    def _win_qpc(self) -> tuple[int, int, int]:
        if self._win_offset is None:
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            ticks, freq = ctypes.c_int64(), ctypes.c_int64()
            kernel32.QueryPerformanceFrequency(ctypes.byref(freq))
            kernel32.QueryPerformanceCounter(ctypes.byref(ticks))
            self._win_offset = (ticks.value, time.monotonic_ns(), freq.value)
        return self._win_offset

    def _win_to_xr(self, instance: Any, mono_ns: int) -> int:
        xr = self.xr
        ticks0, mono0, freq = self._win_qpc()
        ticks = ctypes.c_int64(ticks0 + (mono_ns - mono0) * freq // 1_000_000_000)
        out = xr.Time()
        fn = self._fn(
            instance,
            "xrConvertWin32PerformanceCounterToTimeKHR",
            xr.PFN_xrConvertWin32PerformanceCounterToTimeKHR,
        )
        result = xr.check_result(fn(instance, ctypes.byref(ticks), ctypes.byref(out)))
        if result.is_exception():
            raise result
        return int(out.value)

    def _win_from_xr(self, instance: Any, xr_time: int) -> int:
        xr = self.xr
        ticks0, mono0, freq = self._win_qpc()
        ticks = ctypes.c_int64()
        fn = self._fn(
            instance,
            "xrConvertTimeToWin32PerformanceCounterKHR",
            xr.PFN_xrConvertTimeToWin32PerformanceCounterKHR,
        )
        result = xr.check_result(fn(instance, xr_time, ctypes.byref(ticks)))
        if result.is_exception():
            raise result
        return mono0 + (ticks.value - ticks0) * 1_000_000_000 // freq


def _int(value: Any) -> int:
    """pyopenxr returns some handles and atoms (XrPath) as ctypes integers, which int() refuses."""
    return int(getattr(value, "value", value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
