"""The WebXR wire protocol: one binary msgpack map per WebSocket message, ``{"k": kind, ...}``.

    page ──WebSocket (msgpack)──► API process ──SOCK_SEQPACKET (same bytes)──► recorder process
         ◄── welcome, pong, stats ─┘   (pings answered here, stamped on host monotonic)

The full protocol, field by field, is docs/WEBXR.md; this module holds its names, its limits and the one check
both processes apply to a message before trusting it (``parse``). Why both: the API process closes a page that
sends garbage with a reason the page can show; the recorder re-checks because it trusts no peer with its
recording (a bug in the API process must not tear a session).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 65536  # uvicorn's ws_max_size too: a bigger message is closed with 1009 before we see it
MAX_TEXT_CHARS = 4000  # an annotation's text, as the REST route allows

# page → server
K_HELLO = "hello"  # {k, v, token, origin_ms, hands, audio_rate}: first message of every connection
K_PING = "ping"  # {k, id, t1}: t1 = page time (ms since the epoch of the page clock, float)
K_SYNC = "sync"  # {k, t1, t2, t3, t4}: one finished exchange (t2, t3 host ns from the pong)
K_FRAME = "frame"  # {k, n, t, head, grip_l, aim_l, pad_l, hand_l, ... , dropped}: one XRFrame
K_AUDIO = (
    "audio"  # {k, i, t, pcm, dropped}: int16 little-endian mono PCM from frame i; t = page ms at hand-over
)
K_NOTE = "note"  # {k, text, kind, channel, t}: an annotation stamped with page time t
K_BYE = "bye"  # {k, reason}: the page stops on purpose (no reconnect wait)
# server → page
K_WELCOME = "welcome"  # {k, recording, session, reconnect_s, resumed}
K_PONG = "pong"  # {k, id, t1, t2, t3}
K_STATS = "stats"  # {k, stats}: the recording's live stats, as GET /recordings/current has them
# API process → recorder only (never accepted from a page)
K_GONE = "gone"  # {k, reason}: the page's WebSocket closed
K_RELAY_DROPS = "relay_drops"  # {k, count}: messages the API process could not hand on (recorder busy)

PAGE_KINDS = (K_HELLO, K_PING, K_SYNC, K_FRAME, K_AUDIO, K_NOTE, K_BYE)
SIDES = {"l": "left", "r": "right"}
POSE_FLOATS = 13  # px py pz qx qy qz qw vx vy vz wx wy wz (float32); velocities NaN when the browser has none
PAD_FLOATS = 8  # capture.openxr_streams.CONTROL_FIELDS, NaN where the gamepad has no such input
WEBXR_JOINTS = 25  # WebXR hand joints; OpenXR has 26 (the palm first)
JOINT_FLOATS = 8  # px py pz qx qy qz qw radius

# WebSocket close codes a page can show (CloseEvent.code / reason)
CLOSE_NORMAL = 1000
CLOSE_BAD_DATA = 1007  # a message that is not a protocol message
CLOSE_POLICY = 1008  # a message the protocol forbids here (no hello first, unknown kind)
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_RECORDING = 4409  # no WebXR recording is running under that id
CLOSE_REPLACED = 4410  # a newer connection took the recording over


class ProtocolViolation(ValueError):
    """A message the page should not have sent; ``code`` and ``str()`` are the WebSocket close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason[:120])  # a close reason is at most 123 bytes
        self.code = code


_ARRAYS = {"head": POSE_FLOATS, "grip": POSE_FLOATS, "aim": POSE_FLOATS, "pad": PAD_FLOATS}


def _number(msg: dict[str, Any], key: str) -> float:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolViolation(CLOSE_BAD_DATA, f"{msg.get('k')}: {key} must be a finite number")
    return float(value)


def _blob(msg: dict[str, Any], key: str, floats: int) -> None:
    value = msg.get(key)
    if value is not None and (not isinstance(value, bytes) or len(value) != 4 * floats):
        raise ProtocolViolation(CLOSE_BAD_DATA, f"frame: {key} must be {floats} float32 ({4 * floats} bytes)")


def _check_frame(msg: dict[str, Any]) -> None:
    _number(msg, "t")
    _number(msg, "n")
    _blob(msg, "head", POSE_FLOATS)
    for s in SIDES:
        for part, floats in _ARRAYS.items():
            if part != "head":
                _blob(msg, f"{part}_{s}", floats)
        _blob(msg, f"hand_{s}", WEBXR_JOINTS * JOINT_FLOATS)


def _check_audio(msg: dict[str, Any]) -> None:
    _number(msg, "t")
    index = msg.get("i")
    pcm = msg.get("pcm")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ProtocolViolation(CLOSE_BAD_DATA, "audio: i must be the block's first frame index (int >= 0)")
    if not isinstance(pcm, bytes) or not pcm or len(pcm) % 2:
        raise ProtocolViolation(CLOSE_BAD_DATA, "audio: pcm must be non-empty int16 little-endian bytes")


def _check_note(msg: dict[str, Any]) -> None:
    _number(msg, "t")
    text = msg.get("text")
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT_CHARS:
        raise ProtocolViolation(CLOSE_BAD_DATA, f"note: text must be 1-{MAX_TEXT_CHARS} characters")


def _check_hello(msg: dict[str, Any]) -> None:
    if msg.get("v") != PROTOCOL_VERSION:
        raise ProtocolViolation(
            CLOSE_POLICY, f"hello: protocol version {msg.get('v')!r}; this server speaks 1"
        )
    _number(msg, "origin_ms")


_CHECKS = {
    K_HELLO: _check_hello,
    K_PING: lambda m: (_number(m, "t1"), _number(m, "id")),
    K_SYNC: lambda m: [_number(m, k) for k in ("t1", "t2", "t3", "t4")],
    K_FRAME: _check_frame,
    K_AUDIO: _check_audio,
    K_NOTE: _check_note,
    K_BYE: lambda m: None,
}


def parse(data: bytes, *, allowed: tuple[str, ...] = PAGE_KINDS) -> dict[str, Any]:
    """One message from ``data``, checked field by field; ProtocolViolation says what is wrong with it."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolViolation(
            CLOSE_TOO_BIG, f"message of {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=MAX_MESSAGE_BYTES)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, TypeError) as exc:
        raise ProtocolViolation(CLOSE_BAD_DATA, f"not a msgpack message ({type(exc).__name__})") from exc
    if not isinstance(msg, dict):
        raise ProtocolViolation(CLOSE_BAD_DATA, f"a message is a msgpack map, got {type(msg).__name__}")
    kind = msg.get("k")
    if kind not in allowed:
        raise ProtocolViolation(CLOSE_POLICY, f"unknown message kind {str(kind)[:40]!r}")
    check = _CHECKS.get(kind)
    if check is not None:
        check(msg)
    return msg


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)
