"""Controllers and eye gaze through one OpenXR action set, with bindings for the common controllers.

OpenXR has no "read the trigger of device X": an app declares *actions* (trigger, grip pose, ...) and *suggests*
bindings per interaction profile; the runtime picks the profile of the controller actually in hand. So we
suggest every profile below (each is tried on its own: a runtime that rejects one still gets the others), and
read the actions per hand through the subaction paths /user/hand/left and /user/hand/right. An action that no
binding feeds is inactive, and is stored as inactive (NaN, its validity bit clear), never as a real 0.

Profiles (OpenXR 1.0 core, no extension needed): khr/simple_controller, oculus/touch_controller,
valve/index_controller, htc/vive_controller, microsoft/motion_controller; plus ext/eye_gaze_interaction for
gaze (XR_EXT_eye_gaze_interaction). The runtime's choice per hand is kept in ``profiles``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from capture.openxr_api import is_loss
from capture.openxr_streams import SIDES, controls_sample, pose_sample

# (action, type) in CONTROL_FIELDS order; the thumbstick fills two fields (x, y).
CONTROL_ACTIONS = (
    ("trigger", "float"),
    ("squeeze", "float"),
    ("thumbstick", "vector2f"),
    ("button_a", "boolean"),
    ("button_b", "boolean"),
    ("menu", "boolean"),
    ("thumbstick_click", "boolean"),
)
POSE_ACTIONS = (("grip_pose", "controller"), ("aim_pose", "aim"))  # action, stream prefix
BOTH = ("left", "right")
GAZE_PROFILE = "/interaction_profiles/ext/eye_gaze_interaction"
GAZE_BINDING = "/user/eyes_ext/input/gaze_ext/pose"

_POSES = [("grip_pose", BOTH, "input/grip/pose"), ("aim_pose", BOTH, "input/aim/pose")]
# profile -> (action, hands, input path under /user/hand/<side>/)
PROFILES: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "/interaction_profiles/khr/simple_controller": [
        *_POSES,
        ("trigger", BOTH, "input/select/click"),  # a boolean bound to a float action reads 0.0 or 1.0
        ("menu", BOTH, "input/menu/click"),
    ],
    "/interaction_profiles/oculus/touch_controller": [
        *_POSES,
        ("trigger", BOTH, "input/trigger/value"),
        ("squeeze", BOTH, "input/squeeze/value"),
        ("thumbstick", BOTH, "input/thumbstick"),
        ("thumbstick_click", BOTH, "input/thumbstick/click"),
        ("button_a", ("left",), "input/x/click"),
        ("button_b", ("left",), "input/y/click"),
        ("button_a", ("right",), "input/a/click"),
        ("button_b", ("right",), "input/b/click"),
        ("menu", ("left",), "input/menu/click"),  # the right one is the system button, reserved by runtimes
    ],
    "/interaction_profiles/valve/index_controller": [
        *_POSES,
        ("trigger", BOTH, "input/trigger/value"),
        ("squeeze", BOTH, "input/squeeze/value"),
        ("thumbstick", BOTH, "input/thumbstick"),
        ("thumbstick_click", BOTH, "input/thumbstick/click"),
        ("button_a", BOTH, "input/a/click"),
        ("button_b", BOTH, "input/b/click"),
    ],
    "/interaction_profiles/htc/vive_controller": [
        *_POSES,
        ("trigger", BOTH, "input/trigger/value"),
        ("squeeze", BOTH, "input/squeeze/click"),
        ("thumbstick", BOTH, "input/trackpad"),
        ("thumbstick_click", BOTH, "input/trackpad/click"),
        ("menu", BOTH, "input/menu/click"),
    ],
    "/interaction_profiles/microsoft/motion_controller": [
        *_POSES,
        ("trigger", BOTH, "input/trigger/value"),
        ("squeeze", BOTH, "input/squeeze/click"),
        ("thumbstick", BOTH, "input/thumbstick"),
        ("thumbstick_click", BOTH, "input/thumbstick/click"),
        ("menu", BOTH, "input/menu/click"),
    ],
}


class ActionInput:
    """The action set: created, bound and attached in ``__init__``; read once per frame with ``read``."""

    def __init__(self, api: Any, instance: Any, session: Any, *, controllers: bool, gaze: bool) -> None:
        self.api, self.instance, self.session = api, instance, session
        self.controllers, self.gaze = controllers, gaze
        self.hand_paths = {side: api.path(instance, f"/user/hand/{side}") for side in SIDES}
        self.actions: dict[str, Any] = {}
        self.spaces: dict[str, Any] = {}  # stream name -> action space
        self.bound_profiles: list[str] = []  # profiles the runtime accepted
        self.rejected_profiles: dict[str, str] = {}  # profile -> why
        self.profiles: dict[str, str] = {}  # side -> the runtime's current profile ("" when none)
        self.errors = 0
        self.action_set = api.create_action_set(instance, "vrcap", "vrcap recording")
        subpaths = list(self.hand_paths.values())
        if controllers:
            for name, kind in CONTROL_ACTIONS:
                self.actions[name] = api.create_action(
                    self.action_set, name, kind, name.replace("_", " "), subpaths
                )
            for name, _ in POSE_ACTIONS:
                self.actions[name] = api.create_action(
                    self.action_set, name, "pose", name.replace("_", " "), subpaths
                )
            self._suggest_controllers()
        if gaze:
            self.actions["gaze_pose"] = api.create_action(
                self.action_set, "gaze_pose", "pose", "eye gaze", []
            )
            self._suggest(GAZE_PROFILE, [(self.actions["gaze_pose"], GAZE_BINDING)])
        api.attach_action_sets(session, [self.action_set])
        if controllers:
            for name, prefix in POSE_ACTIONS:
                for side in SIDES:
                    space = api.create_action_space(session, self.actions[name], self.hand_paths[side])
                    self.spaces[f"{prefix}_{side}"] = space
        if gaze:
            self.spaces["gaze"] = api.create_action_space(session, self.actions["gaze_pose"], 0)

    def _suggest_controllers(self) -> None:
        for profile, entries in PROFILES.items():
            bindings = [
                (self.actions[action], f"/user/hand/{side}/{component}")
                for action, sides, component in entries
                for side in sides
            ]
            self._suggest(profile, bindings)

    def _suggest(self, profile: str, bindings: list[tuple[Any, str]]) -> None:
        try:
            paths = [(action, self.api.path(self.instance, text)) for action, text in bindings]
            self.api.suggest_bindings(self.instance, self.api.path(self.instance, profile), paths)
        except Exception as exc:
            if is_loss(exc):
                raise
            self.rejected_profiles[profile] = type(exc).__name__
        else:
            self.bound_profiles.append(profile)

    def refresh_profiles(self) -> None:
        """After INTERACTION_PROFILE_CHANGED: which controller the runtime now reports in each hand."""
        for side in SIDES:
            try:
                self.profiles[side] = self.api.current_interaction_profile(
                    self.instance, self.session, self.hand_paths[side]
                )
            except Exception as exc:
                if is_loss(exc):
                    raise
                self.profiles[side] = ""

    def read(self, base: Any, xr_time: int, t: int) -> dict[str, list[dict[str, Any]]]:
        """Controls, grip/aim poses and gaze at ``xr_time``, stamped host ``t``."""
        api, session = self.api, self.session
        focused = api.sync_actions(session, self.action_set)
        out: dict[str, list[dict[str, Any]]] = {}
        if self.controllers:
            for side in SIDES:
                sub = self.hand_paths[side]
                fields: list[tuple[bool, float]] = []
                for name, kind in CONTROL_ACTIONS:
                    active, x, y = (
                        self._state(self.actions[name], kind, sub) if focused else (False, 0.0, 0.0)
                    )
                    fields.append((active, x))
                    if kind == "vector2f":
                        fields.append((active, y))
                out[f"controls_{side}"] = [controls_sample(fields, t, xr_time)]
        for stream, space in self.spaces.items():
            out[stream] = [pose_sample(self._locate(space, base, xr_time), t, xr_time)]
        return out

    def _state(self, action: Any, kind: str, sub: int) -> tuple[bool, float, float]:
        try:
            return self.api.action_state(self.session, action, kind, sub)
        except Exception as exc:
            if is_loss(exc):
                raise
            self.errors += 1  # a failed read is an inactive input, counted in the source's stats
            return False, 0.0, 0.0

    def _locate(self, space: Any, base: Any, xr_time: int) -> Any:
        try:
            return self.api.locate(space, base, xr_time)
        except Exception as exc:
            if is_loss(exc):
                raise
            self.errors += 1
            return None

    def close(self) -> None:
        """Destroy the action spaces and the action set (its actions go with it). Idempotent."""
        for space in self.spaces.values():
            with contextlib.suppress(Exception):  # closing releases what it can; the runtime may be gone
                self.api.destroy_space(space)
        self.spaces = {}
        if self.action_set is not None:
            with contextlib.suppress(Exception):
                self.api.destroy_action_set(self.action_set)
            self.action_set = None
