"""The converter's fast paths give what the plain per-sample code gave: validation checks on whole arrays
(vrcap/validate.py ``feed_batch``) and pose samples split into columns in C (replay/extract.py ``ArrayStream``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from replay.extract import ArrayStream
from vrcap.metadata import SessionMeta
from vrcap.streams import StreamDescriptor
from vrcap.validate import ValidationReport, _StreamTracker


def _meta() -> SessionMeta:
    streams = [
        StreamDescriptor("head", "pose", 90.0, (7,), "float32", "raw"),
        StreamDescriptor("audio", "audio", 48000.0, (-1, 1), "int16", "pcm_s16le"),
    ]
    return SessionMeta(name="s", streams=streams, start=SessionMeta.new_start())


def _packets(rng: np.random.Generator, n: int, odd: Any) -> list[dict[str, list[dict[str, Any]]]]:
    """Packets whose head times sometimes go back, whose audio counter has gaps, with an undeclared stream
    and empty sample lists; ``odd`` (when not None) is the time of one head sample: a float, a bool or an int
    past 2**63, none of which the fast path takes."""
    out: list[dict[str, list[dict[str, Any]]]] = []
    index = 0
    for k in range(n):
        t = 1_000_000 * k + (int(rng.integers(-3_000_000, 0)) if rng.random() < 0.05 else 0)
        samples: dict[str, list[dict[str, Any]]] = {"head": [{"t": t, "d": b"x" * 28}]}
        if rng.random() < 0.1:
            samples["head"] = []
        blocks = []
        for _ in range(int(rng.integers(0, 3))):
            index += int(rng.integers(1, 40)) if rng.random() < 0.1 else 0
            blocks.append({"t": t, "i": index, "n": 480, "d": b""})
            index += 480
        samples["audio"] = blocks
        if k % 17 == 0:
            samples["mystery"] = [{"t": t}]
        out.append(samples)
    if odd is not None:
        out[n // 2]["head"] = [{"t": odd, "d": b""}]
    return out


def _report(packets: list[dict[str, list[dict[str, Any]]]], batched: bool) -> tuple[dict, Any]:
    meta = _meta()
    report = ValidationReport(path="s")
    tracker = _StreamTracker(report, meta)
    if batched:
        for lo in range(0, len(packets), 64):
            tracker.feed_batch(packets[lo : lo + 64])
    else:
        for samples in packets:
            tracker.feed(samples)
    tracker.finish(meta)
    return asdict(report), (tracker.backwards, tracker.first_t, tracker.last_t, tracker.unknown)


def test_batched_validation_checks_equal_the_per_packet_ones() -> None:
    rng = np.random.default_rng(7)
    for odd in (None, 1.5e9, True, 2**63 + 5):
        packets = _packets(rng, 1000, odd)
        fast, slow = _report(packets, True), _report(packets, False)
        assert fast == slow
        report = fast[0]
        assert report["streams"]["audio"]["gaps"] > 5 and report["streams"]["audio"]["gap_samples"] > 5
        assert fast[1][0]["head"] > 10  # samples going back in time, counted
        assert fast[1][3] == {"mystery"}


def test_array_stream_columns_keep_order_validity_and_drop_wrong_sizes() -> None:
    desc = StreamDescriptor("head", "pose", 90.0, (7,), "float32", "raw")
    stream = ArrayStream(desc)
    assert not stream
    rows = np.arange(70, dtype="<f4").reshape(10, 7)
    for k in range(10):
        sample: dict[str, Any] = {"t": 100 - k, "d": rows[k].tobytes()}
        if k == 3:
            sample["v"] = 0  # not valid
        if k == 5:
            sample["d"] = b"short"
        stream.add([sample])
    stream.add([])
    assert stream
    times, values, valid = stream.arrays()
    assert times.tolist() == [91, 92, 93, 94, 96, 97, 98, 99, 100]  # sorted; the wrong-sized one dropped
    assert values[0].tolist() == rows[9].tolist() and values[-1].tolist() == rows[0].tolist()
    assert valid.tolist() == [True] * 5 + [False] + [True] * 3
    later = ArrayStream(desc)
    later.add([{"t": t, "d": rows[0].tobytes()} for t in (10, 20)])
    later.add([{"t": t, "d": rows[0].tobytes()} for t in (30, 40)])
    later.forget_before(25)
    assert later.arrays()[0].tolist() == [30, 40]


def test_entry_digest_hashes_what_the_index_file_holds() -> None:
    """validate compares the segments' entries with index.vri by hash, a block of entries at a time: the
    hash must be of exactly the bytes SessionIndex writes, whatever the block boundaries."""
    import hashlib

    from vrcap.index import SessionIndex, encode_index_header
    from vrcap.validate import _EntryDigest

    rows = [(k, 10**12 + 11_111_111 * k, k // 5000, 16 + 300 * k) for k in range(10_000)]
    digest = _EntryDigest()
    for row in rows:
        digest.add(*row)
    stored = SessionIndex.from_entries(rows).save_bytes()[len(encode_index_header()) :]
    assert digest.count == 10_000 and digest.first_t == rows[0][1] and digest.last_t == rows[-1][1]
    assert digest.digest() == hashlib.blake2b(stored, digest_size=32).digest()
    other = _EntryDigest()
    for seq, t, seg, off in rows:
        other.add(seq, t, seg, off + (seq == 7777))  # one offset off by a byte
    assert other.digest() != digest.digest()
