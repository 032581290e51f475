"""A safetensors file as numpy views of one read-only memory map.

Why not ``safe_open(...).get_slice``: each call goes through the library's Python/Rust boundary and builds a
tensor, ~10 µs a tensor, ten tensors a window — that alone capped the Dataset near 5,000 windows/s on a laptop
core. The format is simple and stable (8-byte little-endian header length, a JSON header of dtype, shape and
byte offsets, then the data), so the views come straight from numpy: slicing a window is pointer arithmetic,
and the bytes are read by the OS when touched. The shards are written by ``safetensors.numpy.save_file``.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from replay.errors import DatasetError

DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "U16": np.uint16,
    "I32": np.int32,
    "U32": np.uint32,
    "I64": np.int64,
    "U64": np.uint64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}
MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def map_shard(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the file as a read-only view; raises DatasetError naming the file when it is damaged."""
    try:
        with open(path, "rb") as f:  # the map outlives the descriptor
            # a plain ndarray over the map: np.memmap's subclass hooks cost more than the slicing itself
            data = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"shard {path} cannot be opened ({exc}); convert again with `vrcap replay`"
        ) from exc
    try:
        if data.size < 8:
            raise ValueError("shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", data[:8].tobytes())
        if length > MAX_HEADER or 8 + length > data.size:
            raise ValueError(f"header length {length} does not fit a {data.size}-byte file")
        header = json.loads(data[8 : 8 + length].tobytes())
        base = 8 + length
        out: dict[str, np.ndarray] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
            begin, end = (int(x) for x in info["data_offsets"])
            shape = tuple(int(x) for x in info["shape"])
            if base + end > data.size or end - begin != int(np.prod(shape)) * dtype.itemsize:
                raise ValueError(f"tensor {name!r} runs past the end of the file or has the wrong size")
            out[name] = data[base + begin : base + end].view(dtype).reshape(shape)
        return out
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"shard {path} is damaged ({exc}); convert the session again with `vrcap replay`"
        ) from exc
