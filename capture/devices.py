"""`vrcap devices`: every microphone, camera and OpenXR runtime vrcap can see, or why it sees none."""

from __future__ import annotations

from typing import Any


def list_devices(max_camera_index: int = 8) -> dict[str, Any]:
    from capture.audio import list_microphones
    from capture.camera import list_cameras
    from capture.openxr_probe import probe_openxr

    return {"audio": list_microphones(), "cameras": list_cameras(max_camera_index), "openxr": probe_openxr()}
