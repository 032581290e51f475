"""What the page's review shows of a finished session, computed in one pass and cut down to a fixed size.

Runs in the review worker process (server/review_api.py): the pass reads every record, which would hold the API
process's GIL for as long. Everything leaves here bounded by ``points``: trajectories, speeds and the audio level
are averaged into at most that many time buckets, annotations and gap lists are capped, so a two-hour session
answers with the same few hundred kilobytes as a two-minute one.
"""

from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from vrcap.annotate_format import list_sidecars, read_sidecar
from vrcap.errors import FormatError
from vrcap.packets import POSE_POSITION_VALID, S_DATA, S_TIME, S_VALID, SAMPLES, SEQ, TIME
from vrcap.reader import SessionReader
from vrcap.streams import StreamDescriptor

MAX_EVENTS = 500  # annotations, drops and gaps each: a timeline has no room for more marks
WRIST = 1  # XR_EXT_hand_tracking joint order: 0 palm, 1 wrist
GAP_FACTOR = 3.0  # a frame interval over 3x the median (and over 50 ms) is a gap in the recording
MIN_GAP_S = 0.05
FULL_SCALE = {"pcm_s16le": 32768.0, "pcm_f32le": 1.0}
SILENT_DBFS = -120.0  # the floor the level is clipped at: digital silence has no finite level


_AUDIO, _CAMERA, _TEXT = "audio", "camera", "text"  # what the pass does with a stream's samples


class _Track:
    """Positions of one tracked part (head, a controller, a hand's wrist): raw samples kept, parsed once at the end."""

    def __init__(self, name: str, kind: str, width: int, joint: int) -> None:
        self.name, self.kind, self.width, self.joint = name, kind, width, joint
        self.t = array("q")  # machine ints, contiguous: numpy takes them without a conversion pass
        self.v = array("q")
        self.d: list[bytes] = []  # filled by overview()'s pass, which appends to all three directly

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, (N, 3) positions) of the samples whose position is valid and finite."""
        sizes = {len(d) for d in self.d}
        if len(sizes) != 1:  # a malformed sample among them: keep only those of the usual size
            usual = max(sizes, key=[len(d) for d in self.d].count)
            keep = [i for i, d in enumerate(self.d) if len(d) == usual]
            self.t, self.v = (array("q", [x[i] for i in keep]) for x in (self.t, self.v))
            self.d = [self.d[i] for i in keep]
        data = np.frombuffer(b"".join(self.d), dtype="<f4").reshape(len(self.d), -1)
        p = data[:, self.joint * self.width : self.joint * self.width + 3].astype(np.float64)
        ok = (np.frombuffer(self.v, dtype=np.int64) & POSE_POSITION_VALID).astype(bool) & np.isfinite(p).all(
            axis=1
        )
        return np.frombuffer(self.t, dtype=np.int64)[ok], p[ok]


class _Level:
    """Per audio block: time, min, max, sum of squares and count, in full-scale units (computed at the end)."""

    def __init__(self, stream: StreamDescriptor) -> None:
        self.name = stream.name
        self.rate_hz = float(stream.rate_hz)
        self.dtype = "<i2" if stream.encoding == "pcm_s16le" else "<f4"
        self.scale = FULL_SCALE[stream.encoding]
        self.item = np.dtype(self.dtype).itemsize
        self.t = array("q")
        self.counts = array("q")  # whole samples per block
        self.pcm = bytearray()  # every block's whole samples, copied while they are in cache

    def add(self, samples: list[dict[str, Any]]) -> None:
        for sample in samples:
            data = sample[S_DATA]
            if data:
                n = len(data) // self.item
                self.t.append(sample[S_TIME])
                self.counts.append(n)
                self.pcm += data if n * self.item == len(data) else data[: n * self.item]

    def blocks(self) -> np.ndarray:
        """(N, 5): time, min, max, sum of squares, count per block; no rows when no block holds a sample."""
        counts = np.frombuffer(self.counts, dtype=np.int64)
        keep = counts > 0
        if not keep.any():
            return np.zeros((0, 5))
        raw = np.frombuffer(self.pcm, dtype=self.dtype)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[keep]
        # min and max in the stored type, squares in float32 (relative error ~1e-7 over a block, far under the
        # 0.1 dB shown): float64 throughout, or a float64 accumulator in reduceat, cost 5-10x as much.
        wide = raw.astype(np.float32)
        np.multiply(wide, wide, out=wide)  # in place: a second array of this size costs its page faults again
        sumsq = np.add.reduceat(wide, starts).astype(np.float64) / (self.scale * self.scale)
        return np.column_stack([
            np.frombuffer(self.t, dtype=np.int64)[keep].astype(np.float64),
            np.minimum.reduceat(raw, starts).astype(np.float64) / self.scale,
            np.maximum.reduceat(raw, starts).astype(np.float64) / self.scale,
            sumsq, counts[keep].astype(np.float64),
        ])  # fmt: skip


def overview(path: str, points: int) -> dict[str, Any]:
    """The review of the session at ``path`` with at most ``points`` buckets per curve (plain data)."""
    with SessionReader(Path(path)) as reader:
        meta = reader.meta
        tracks: dict[str, _Track] = {}
        for s in meta.streams:
            if s.kind in ("pose", "gaze") and s.name in ("head", "controller_left", "controller_right"):
                tracks[s.name] = _Track(s.name, s.kind, int(s.shape[-1]), 0)
            elif s.kind == "hand":
                tracks[s.name] = _Track(s.name, s.kind, int(s.shape[-1]), WRIST)
        audio = next(
            (_Level(s) for s in meta.streams if s.kind == "audio" and s.encoding in FULL_SCALE), None
        )
        texts = {s.name for s in meta.streams if s.kind == "text"}
        cameras = {s.name: s for s in meta.streams if s.kind == "video"}
        camera_frames = dict.fromkeys(cameras, 0)
        notes: list[dict[str, Any]] = []
        times = array("q")
        seqs = array("q")
        # The pass is the cost of a review (issue 17's bench: within 1.5x of a plain read): per sample, only
        # bound appends, taken while the sample is still in cache; all arithmetic waits for the arrays.
        adders = {name: (tr.t.append, tr.v.append, tr.d.append) for name, tr in tracks.items()}
        add_time, add_seq = times.append, seqs.append
        others = {**dict.fromkeys(texts, _TEXT), **dict.fromkeys(camera_frames, _CAMERA)}
        if audio is not None:
            others[audio.name] = _AUDIO
        for packet in reader.packets(errors="stop"):
            add_time(packet[TIME])
            add_seq(packet[SEQ])
            for name, samples in packet.get(SAMPLES, {}).items():
                add = adders.get(name)
                if add is not None:
                    at, av, ad = add
                    for x in samples:
                        at(x[S_TIME])
                        av(x.get(S_VALID, 0))
                        ad(x[S_DATA])
                    continue
                what = others.get(name)  # None for the streams the review does not show (controls, ...)
                if what is _AUDIO:
                    audio.add(samples)  # type: ignore[union-attr]
                elif what is _CAMERA:
                    camera_frames[name] += len(samples)
                elif what is _TEXT:
                    notes.extend({"t": int(x[S_TIME]), "stream": name, **_text(x)} for x in samples)
    notes.extend(_imported(Path(path)))
    if not times:
        return {"name": meta.name, "duration_s": 0.0, "frames": 0, "points": points, "drops": [], "gaps": [],
                "annotations": [], "annotations_total": 0, "tracks": [], "audio": None, "cameras": []}  # fmt: skip
    t0, t1 = times[0], times[-1]
    edges = np.linspace(t0, max(t1, t0 + 1), points + 1)
    notes.sort(key=lambda n: n["t"])
    drops, gaps = _holes(np.frombuffer(times, dtype=np.int64), np.frombuffer(seqs, dtype=np.int64), t0)
    return {
        "name": meta.name,
        "duration_s": (t1 - t0) / 1e9,
        "frames": len(times),
        "points": points,
        "drops": drops,
        "gaps": gaps,
        "annotations": [{**n, "t": _s(n["t"] - t0)} for n in notes[:MAX_EVENTS]],
        "annotations_total": len(notes),
        "tracks": [
            b for b in (_bucket_track(tr, edges, t0) for tr in tracks.values() if tr.t) if b is not None
        ],
        "audio": _bucket_audio(audio, edges, t0) if audio is not None else None,
        "cameras": [
            {"name": n, "frames": camera_frames[n], "width": int(s.shape[1]), "height": int(s.shape[0])}
            for n, s in cameras.items()
            if len(s.shape) >= 2
        ],
    }


def _imported(session: Path) -> list[dict[str, Any]]:
    """Annotations imported after recording (`vrcap annotate --import`, sidecar files): on the timeline too."""
    out = []
    for sidecar in list_sidecars(session):
        try:
            events = read_sidecar(sidecar).events
        except FormatError:
            continue  # validation reports a damaged sidecar; the review shows what it can
        out.extend({"t": int(e[S_TIME]), "stream": "imported", **_text(e)} for e in events)
    return out


def _text(sample: dict[str, Any]) -> dict[str, str]:
    d = sample.get(S_DATA)
    d = d if isinstance(d, dict) else {}
    return {k: str(d.get(k, "")) for k in ("text", "kind", "channel")}


def _s(ns: float) -> float:
    return round(float(ns) / 1e9, 4)


def _holes(times: np.ndarray, seqs: np.ndarray, t0: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Dropped frames (jumps in seq) and gaps in time (frame intervals far over the usual one)."""
    jumps = np.diff(seqs) - 1
    at = np.nonzero(jumps > 0)[0][:MAX_EVENTS]
    drops = [{"t": _s(times[i] - t0), "frames": int(jumps[i])} for i in at]
    dt = np.diff(times)
    if dt.size == 0:
        return drops, []
    limit = max(GAP_FACTOR * float(np.median(dt)), MIN_GAP_S * 1e9)
    long = np.nonzero(dt > limit)[0][:MAX_EVENTS]
    gaps = [{"t": _s(times[i] - t0), "length_s": _s(dt[i])} for i in long]
    return drops, gaps


def _bucket_means(t: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (N, K) per time bucket; NaN where a bucket holds nothing."""
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
    sums = np.stack(
        [np.bincount(which, weights=values[:, k], minlength=len(edges) - 1) for k in range(values.shape[1])],
        1,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def _rounded(values: np.ndarray, digits: int = 4) -> list[float | None]:
    """Plain floats for JSON, ``None`` where there is no finite value; rounded by numpy, in one call."""
    values = np.asarray(values, dtype=np.float64)
    out: list[float | None] = np.round(values, digits).tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def _bucket_track(track: _Track, edges: np.ndarray, t0: int) -> dict[str, Any] | None:
    t, p = track.positions()
    if len(t) < 2:
        return None
    dt = np.diff(t) / 1e9
    speed = np.linalg.norm(np.diff(p, axis=0), axis=1) / np.where(dt > 0, dt, np.nan)
    speed = np.concatenate([[speed[0] if speed.size else 0.0], speed])
    means = _bucket_means(t, np.column_stack([p, speed]), edges)
    centers = (edges[:-1] + edges[1:]) / 2 - t0
    keep = np.isfinite(means[:, 0])
    return {
        "name": track.name,
        "kind": track.kind,
        "t": _rounded(centers[keep] / 1e9),
        "x": _rounded(means[keep, 0]),
        "y": _rounded(means[keep, 1]),
        "z": _rounded(means[keep, 2]),
        "speed": _rounded(means[keep, 3], 3),
        "max_speed": round(float(np.nanmax(speed)), 3) if np.isfinite(speed).any() else None,
    }


def _bucket_audio(level: _Level, edges: np.ndarray, t0: int) -> dict[str, Any] | None:
    rows = level.blocks()
    if not len(rows):
        return None  # no block holds a whole sample: no level to show
    t = rows[:, 0].astype(np.int64)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    n = len(edges) - 1
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, which, rows[:, 1])
    np.maximum.at(hi, which, rows[:, 2])
    sumsq = np.bincount(which, weights=rows[:, 3], minlength=n)
    count = np.bincount(which, weights=rows[:, 4], minlength=n)
    keep = count > 0
    rms = np.sqrt(sumsq[keep] / count[keep])
    with np.errstate(divide="ignore"):
        dbfs = np.maximum(20 * np.log10(rms), SILENT_DBFS)
    centers = (edges[:-1] + edges[1:]) / 2 - t0
    total = float(rows[:, 4].sum())
    overall = math.sqrt(float(rows[:, 3].sum()) / total) if total else 0.0
    return {
        "stream": level.name,
        "rate_hz": level.rate_hz,
        "t": _rounded(centers[keep] / 1e9),
        "min": _rounded(lo[keep]),
        "max": _rounded(hi[keep]),
        "rms_dbfs": _rounded(dbfs, 1),
        "peak": round(float(max(np.abs(lo[keep]).max(), np.abs(hi[keep]).max())), 4),
        "rms_dbfs_overall": round(max(20 * math.log10(overall), SILENT_DBFS), 1)
        if overall > 0
        else SILENT_DBFS,
    }
