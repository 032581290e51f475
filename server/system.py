"""Routes: health (no token: a load balancer or the page may ask) and the devices the recorder can see."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from server.deps import Authorized, RecorderDep
from server.models import Devices, Health
from vrcap import __version__

router = APIRouter(tags=["system"])


@router.get("/health", summary="Liveness; the only API route without a token")
async def health(recorder: RecorderDep) -> Health:
    """Under `vrcap serve` a plain GET is answered below the app with the same body (health_body)."""
    return Health(version=__version__, recording=recorder.recording)


def health_body(app: Any) -> bytes | None:
    """The /health body from memory, for server/connlimits.py; None before the app has started."""
    recorder = getattr(app.state, "recorder", None)
    if recorder is None:
        return None
    return Health(version=__version__, recording=recorder.recording).model_dump_json().encode()


@router.get("/devices", summary="Microphones, cameras and the OpenXR runtime")
async def devices(_: Authorized) -> Devices:
    from capture.devices import list_devices

    found = await asyncio.to_thread(list_devices)  # probing devices blocks for up to a second
    return Devices(**found)
