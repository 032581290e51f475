"""Frames between the converter and its chunk-builder process (replay/chunk_process.py): arrays go through the
shared region when they fit and through the pipe when they do not, and come back equal either way; a chunk's
audio crosses as arrays, not as a thousand byte strings."""

from __future__ import annotations

import mmap
import os
import pickle
import threading
from typing import Any

import numpy as np
import pytest

from replay import chunk_process
from replay.audio_stream import AudioChunk, AudioLayout
from tests.helpers import skip_or_fail


def _roundtrip(obj: Any, send_region: memoryview | None, recv_region: memoryview | None, copy: bool) -> Any:
    r, w = os.pipe()
    out: list[Any] = []

    def read(stream: Any) -> None:
        try:
            out.append(chunk_process._recv(stream, recv_region, copy))
        except Exception as exc:  # raised again on the test's thread
            out.append(exc)

    with os.fdopen(r, "rb") as rf, os.fdopen(w, "wb") as wf:
        reader = threading.Thread(target=read, args=(rf,))
        reader.start()  # the pipe holds 64 KB: the other end must read while this one writes
        chunk_process._send(wf, obj, send_region)
        reader.join()
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def _payload() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {
        "pcm": rng.integers(-(2**15), 2**15, (300, 1600, 1), dtype=np.int16),
        "fortran": np.asfortranarray(rng.standard_normal((50, 7))),
        "strided": np.arange(100, dtype=np.int64)[::3],  # not contiguous: pickled in the frame itself
        "blob": np.frombuffer(b"abcdefg" * 1000, np.uint8),
        "small": [b"x" * 10, 7, "text"],
    }


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    arrays = all(
        np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in ("pcm", "fortran", "strided", "blob")
    )
    return arrays and a["small"] == b["small"]


def test_arrays_cross_through_the_shared_region_when_they_fit() -> None:
    region = memoryview(mmap.mmap(-1, 4 * 1024 * 1024))
    payload = _payload()
    got = _roundtrip(payload, region, region, copy=False)
    assert _equal(got, payload)
    assert np.shares_memory(got["pcm"], np.frombuffer(region, np.uint8))  # a view of the region: no copy
    copied = _roundtrip(payload, region, region, copy=True)
    assert _equal(copied, payload) and not np.shares_memory(copied["pcm"], np.frombuffer(region, np.uint8))


def test_arrays_that_do_not_fit_go_through_the_pipe() -> None:
    small = memoryview(mmap.mmap(-1, 64 * 1024))  # the PCM alone is 960 KB
    payload = _payload()
    assert _equal(_roundtrip(payload, small, None, copy=False), payload)  # the reader needs no region
    assert _equal(_roundtrip(payload, None, None, copy=False), payload)


def test_a_frame_naming_shared_memory_the_reader_lacks_is_a_closed_pipe() -> None:
    region = memoryview(mmap.mmap(-1, 4 * 1024 * 1024))
    with pytest.raises(EOFError, match="shared memory"):
        _roundtrip(_payload(), region, None, copy=False)


def test_the_builder_process_maps_shared_memory_and_answers_through_it() -> None:
    if not hasattr(os, "memfd_create"):
        skip_or_fail("shared memory for the builder needs memfd (Linux); elsewhere frames use the pipe")
    process = chunk_process.BuilderProcess()
    try:
        assert process._map is not None
        assert process.call("pid") == process.proc.pid
    finally:
        process.close()
    assert process._map is None


def test_a_chunks_audio_pickles_as_arrays_and_computes_the_same() -> None:
    rng = np.random.default_rng(5)
    blocks = [(480 * k, rng.integers(-3000, 3000, 480, dtype=np.int16).tobytes()) for k in range(200)]
    chunk = AudioChunk(blocks, np.arange(0, 90_000, 1600, dtype=np.int64))
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(chunk, protocol=5, buffer_callback=buffers.append)
    assert (
        len(data) < 2_000 and sum(b.raw().nbytes for b in buffers) >= 200 * 960
    )  # the samples are out of band
    back = pickle.loads(data, buffers=buffers)
    assert [(i, bytes(d)) for i, d in back.blocks] == blocks
    for empty in (
        AudioChunk([], chunk.starts),
        AudioChunk(None, chunk.starts),
    ):  # a muted or missing microphone
        assert pickle.loads(pickle.dumps(empty, protocol=5)).blocks == empty.blocks
    layout = AudioLayout(48_000, 1, 1600, 480, 1200, 3, 80, 0.0, 24_000.0)  # the defaults at 30 steps/s
    a, b = chunk.compute(layout), back.compute(layout)
    assert a.mask.sum() > 50 and np.array_equal(a.pcm, b.pcm) and np.array_equal(a.mel, b.mel)
