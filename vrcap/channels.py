"""Channel metadata of a stream as Lab Streaming Layer tools expect it: label, type and unit per channel.

Shared by the XDF exporter (replay) and the LSL outlets (capture), so a stream is described the same way in a
LabRecorder file made live from `vrcap record --lsl-out` and in one made afterwards by `vrcap export`.
Types follow the LSL meta-data conventions where one exists (MoCap positions and orientations, Audio,
Markers, Gaze); vrcap's own kinds (controls, signal) keep their names.
"""

from __future__ import annotations

import math

from vrcap.streams import StreamDescriptor

LSL_TYPES = {"pose": "MoCap", "hand": "MoCap", "gaze": "Gaze", "controls": "Controls", "audio": "Audio",
             "video": "VideoFrames", "text": "Markers", "signal": "Signal"}  # fmt: skip
FIELD_TYPES = {
    "px": ("PositionX", "meters"), "py": ("PositionY", "meters"), "pz": ("PositionZ", "meters"),
    "qx": ("OrientationX", "normalized"), "qy": ("OrientationY", "normalized"),
    "qz": ("OrientationZ", "normalized"), "qw": ("OrientationW", "normalized"),
    "vx": ("VelocityX", "meters/second"), "vy": ("VelocityY", "meters/second"),
    "vz": ("VelocityZ", "meters/second"), "wx": ("AngularVelocityX", "radians/second"),
    "wy": ("AngularVelocityY", "radians/second"), "wz": ("AngularVelocityZ", "radians/second"),
    "radius": ("Radius", "meters"),
}  # fmt: skip
TEXT_CHANNELS = ("text", "kind", "channel")
NUMPY_TO_LSL = {"float32": "float32", "float64": "double64", "int8": "int8", "int16": "int16",
                "int32": "int32", "int64": "int64", "uint8": "int16", "uint16": "int32"}  # fmt: skip


def channel_labels(desc: StreamDescriptor) -> list[tuple[str, str, str]]:
    """(label, type, unit) per channel: text is three string channels, a camera one frame-number channel."""
    if desc.kind == "text":
        return [(name, "Marker", "") for name in TEXT_CHANNELS]
    if desc.kind == "video":
        return [("frame", "FrameNumber", "")]
    if desc.kind == "audio":
        return [(f"ch{i}", "Audio", "int16 full scale 32767") for i in range(desc.shape[-1])]
    fields = list(desc.fields)
    count = math.prod(d for d in desc.shape if d > 0) if desc.shape else 1
    if desc.kind == "hand" and len(desc.shape) == 2 and len(fields) == desc.shape[1]:
        return [
            (f"joint{j:02d}_{f}", *FIELD_TYPES.get(f, (f, ""))) for j in range(desc.shape[0]) for f in fields
        ]
    if len(fields) != count:
        fields = [f"ch{i}" for i in range(count)]
    kind_type = "Controls" if desc.kind == "controls" else desc.kind
    return [(f, *FIELD_TYPES.get(f, (kind_type, desc.units))) for f in fields]


def channel_format(desc: StreamDescriptor) -> str:
    """The LSL/XDF channel format of a stream's values (uint types widen to the next signed one)."""
    if desc.kind == "text":
        return "string"
    if desc.kind == "video":
        return "int64"
    return NUMPY_TO_LSL.get(desc.dtype, "double64")


def lsl_type(desc: StreamDescriptor) -> str:
    return LSL_TYPES.get(desc.kind, desc.kind)
