"""Is there an OpenXR runtime, and what does it offer? For `vrcap devices` and clear errors at record time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

INSTALL_HINT = (
    "install and start an OpenXR runtime — SteamVR (set it as the OpenXR runtime), Monado "
    "(`monado-service`), or Meta Quest Link — or record without a headset with --source sim"
)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The OpenXR loader prints its own errors on fd 2; our one-line message says it better."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe_openxr() -> dict[str, Any]:
    """``{"available": bool, "runtime", "runtime_version", "system", "extensions", "reason"}``; never raises."""
    try:
        import xr
    except Exception as exc:  # pyopenxr missing or its loader library broken
        return {"available": False, "reason": f"pyopenxr cannot be imported ({exc}); pip install pyopenxr"}
    try:
        with _quiet_stderr():
            extensions = sorted(e.extension_name.decode() if isinstance(e.extension_name, bytes) else str(e.extension_name)
                                for e in xr.enumerate_instance_extension_properties())  # fmt: skip
            wanted = [e for e in ("XR_MND_headless", "XR_KHR_convert_timespec_time") if e in extensions]
            instance = xr.create_instance(
                xr.InstanceCreateInfo(
                    application_info=xr.ApplicationInfo(
                        application_name="vrcap", engine_name="vrcap", api_version=xr.XR_CURRENT_API_VERSION
                    ),
                    enabled_extension_names=wanted,
                )
            )
            try:
                props = xr.get_instance_properties(instance)
                info: dict[str, Any] = {
                    "available": True,
                    "runtime": _text(props.runtime_name),
                    "runtime_version": str(xr.Version(props.runtime_version)),
                    "extensions": extensions,
                }
                try:
                    system = xr.get_system(
                        instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY)
                    )
                    info["system"] = _text(xr.get_system_properties(instance, system).system_name)
                except Exception as exc:
                    info["system"] = None
                    info["reason"] = f"runtime has no headset connected ({type(exc).__name__})"
                return info
            finally:
                xr.destroy_instance(instance)
    except Exception as exc:
        name = type(exc).__name__
        if name == "RuntimeUnavailableError":
            return {"available": False, "reason": f"no OpenXR runtime found: {INSTALL_HINT}"}
        return {"available": False, "reason": f"the OpenXR runtime refused ({name}: {exc}); {INSTALL_HINT}"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
