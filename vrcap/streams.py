"""Stream descriptors: what each stream in a session holds, stored in session.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from vrcap.errors import FormatError

KINDS = ("pose", "controls", "hand", "audio", "video", "text", "gaze", "signal")  # signal: an LSL stream
ENCODINGS = ("raw", "pcm_s16le", "pcm_f32le", "jpeg", "png", "utf8")


@dataclass(frozen=True)
class StreamDescriptor:
    """One stream. ``shape`` is per sample; -1 marks the variable leading axis (audio frames per block)."""

    name: str
    kind: str
    rate_hz: float  # nominal samples per second; 0 for irregular streams (text)
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name of the decoded array ("float32", "int16", "uint8"); "" for text
    encoding: str  # how sample["d"] is stored, one of ENCODINGS
    units: str = ""  # e.g. "m, unit quaternion xyzw, m/s, rad/s"
    frame: str = ""  # coordinate frame, e.g. "stage: right-handed, +Y up, -Z forward (OpenXR)"
    fields: tuple[str, ...] = ()  # names along the last axis, when it has named components
    source: str = ""  # which source produced it ("sim", "openxr", "sounddevice", "opencv")
    clock: str = ""  # what a sample's "st" counts, e.g. "sim_ns", "xr_time_ns", "sample_index"
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific facts (device name, JPEG quality)
    # Keys a newer 1.x writer added that this version does not know: kept so a repair writes them back (§5).
    unknown: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.unknown)
        out.update(asdict(self))
        del out["unknown"]
        out["shape"] = list(self.shape)
        out["fields"] = list(self.fields)
        return out

    @classmethod
    def from_dict(cls, data: object) -> StreamDescriptor:
        if not isinstance(data, dict):
            raise FormatError(f"a stream descriptor is a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)} - {"unknown"}
        missing = {"name", "kind", "rate_hz", "shape", "dtype", "encoding"} - data.keys()
        if missing:
            raise FormatError(f"stream descriptor {data.get('name', '?')!r} lacks {sorted(missing)}")
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["shape"] = tuple(int(x) for x in kwargs["shape"])
            kwargs["fields"] = tuple(kwargs.get("fields", ()))
        except (TypeError, ValueError) as exc:
            raise FormatError(
                f"stream descriptor {data.get('name')!r}: shape or fields malformed ({exc})"
            ) from None
        if not isinstance(kwargs.get("extra", {}), dict):
            raise FormatError(f"stream descriptor {data.get('name')!r}: 'extra' must be an object")
        unknown = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, unknown=unknown)
