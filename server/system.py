"""Routes: health (no token: a load balancer or the page may ask) and the devices the recorder can see."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from server.deps import Authorized, RecorderDep
from server.models import Devices, Health
from vrcap import __version__

router = APIRouter(tags=["system"])


@router.get("/health", summary="Liveness; the only API route without a token")
async def health(recorder: RecorderDep) -> Health:
    return Health(version=__version__, recording=recorder.recording)


@router.get("/devices", summary="Microphones, cameras and the OpenXR runtime")
async def devices(_: Authorized) -> Devices:
    from capture.devices import list_devices

    found = await asyncio.to_thread(list_devices)  # probing devices blocks for up to a second
    return Devices(**found)
