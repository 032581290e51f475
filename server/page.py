"""The companion page: a few static files shipped inside the package, served with a strict CSP.

No build step: plain HTML/JS/CSS read once with importlib.resources. The page holds no secret; it asks for the
token (or takes it from ``#token=`` in the pairing URL, which browsers never send to the server).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from server.errors import ApiError

router = APIRouter(include_in_schema=False)
FILES = {
    "index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css",
    "msgpack.js": "text/javascript", "webxr.js": "text/javascript", "mic-worklet.js": "text/javascript",
    "words.js": "text/javascript", "charts.js": "text/javascript", "review.js": "text/javascript",
    "jobs.js": "text/javascript",
}  # fmt: skip
SECURITY_HEADERS = {
    # Only our own scripts and styles; fetch and WebSocket back to the same origin; never framed. blob: images are
    # the review's thumbnails, fetched with the token and shown from memory.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files("server").joinpath("page", name).read_bytes()


@router.get("/")
async def index() -> Response:
    return Response(_read("index.html"), media_type=FILES["index.html"], headers=SECURITY_HEADERS)


@router.get("/page/{name}")
async def asset(name: str) -> Response:
    if name not in FILES:
        raise ApiError(404, "not-found", f"no page file {name!r}", "open / for the companion page")
    return Response(_read(name), media_type=FILES[name], headers=SECURITY_HEADERS)
