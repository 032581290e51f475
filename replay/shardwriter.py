"""A safetensors shard written as it fills: each tensor's rows are appended to a spill file of its own, and
``finish`` lays the files out behind one header.

Why not ``safetensors.numpy.save_file``: it needs every tensor whole in memory (and builds the file in memory
once more), so a session's peak memory grew with its length — 14.5 GB for two hours at the default config.
Spilling keeps memory at one chunk of steps whatever the length; the price is writing the bytes twice (spill,
then the shard), at disk speed, a few seconds for an hour. The result is an ordinary safetensors file that
``safetensors.safe_open`` and ``replay.shardmap`` read: the 8-byte header length, the JSON header (padded with
spaces to a multiple of 8), then the tensors back to back, larger dtypes first so every tensor is aligned.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from types import TracebackType

import numpy as np

from replay.shardmap import DTYPES

_CODES = {np.dtype(v).str.lstrip("<>|="): k for k, v in DTYPES.items()}
COPY_BLOCK = 16 * 1024 * 1024  # bytes copied at a time from a spill file into the shard


def dtype_code(dtype: np.dtype) -> str:
    """safetensors' name of a numpy dtype (``float32`` -> ``F32``)."""
    return _CODES[np.dtype(dtype).str.lstrip("<>|=")]


class ShardWriter:
    """Append rows per tensor; ``finish(path)`` writes the shard (atomically: temp file + rename).

    Every ``append`` of a tensor must have the same trailing shape and dtype; rows are the first axis. The spill
    folder is removed on ``close`` whatever happened, so an interrupted conversion leaves no half shard.
    """

    def __init__(self, spill_dir: Path) -> None:
        self.spill_dir = Path(spill_dir)
        self.spill_dir.mkdir(parents=True, exist_ok=False)
        self._files: dict[str, object] = {}
        self._info: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}  # name -> (dtype, trailing shape)
        self._rows: dict[str, int] = {}

    def append(self, name: str, rows: np.ndarray) -> None:
        dtype, trailing = rows.dtype, tuple(rows.shape[1:])
        known = self._info.setdefault(name, (dtype, trailing))
        if known != (dtype, trailing):
            raise ValueError(f"tensor {name!r}: rows of {dtype}{trailing} after {known[0]}{known[1]}")
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = open(self.spill_dir / f"{len(self._files):04d}.bin", "wb")  # noqa: SIM115
        data = np.ascontiguousarray(rows, dtype=dtype.newbyteorder("<"))
        if data.size:
            f.write(memoryview(data.reshape(-1)).cast("B"))  # type: ignore[attr-defined]
        self._rows[name] = self._rows.get(name, 0) + rows.shape[0]

    def shapes(self) -> dict[str, tuple[str, list[int]]]:
        """name -> (numpy dtype name, full shape) of what was appended so far."""
        return {n: (str(d), [self._rows[n], *t]) for n, (d, t) in sorted(self._info.items())}

    def finish(self, path: Path, metadata: dict[str, str]) -> int:
        """Write the shard at ``path``; returns its size in bytes."""
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        # larger items first, then by name: every tensor starts at a multiple of its item size
        order = sorted(self._info, key=lambda n: (-self._info[n][0].itemsize, n))
        header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
        offset = 0
        for name in order:
            dtype, trailing = self._info[name]
            size = self._rows[name] * int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize
            header[name] = {
                "dtype": dtype_code(dtype),
                "shape": [self._rows[name], *trailing],
                "data_offsets": [offset, offset + size],
            }
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as out:
                out.write(struct.pack("<Q", len(text)))
                out.write(text)
                for name in order:
                    with open(self._files[name].name, "rb") as src:  # type: ignore[attr-defined]
                        shutil.copyfileobj(src, out, COPY_BLOCK)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path.stat().st_size

    def close(self) -> None:
        for f in self._files.values():
            f.close()  # type: ignore[attr-defined]
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
