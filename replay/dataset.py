"""SessionDataset: windows of T steps from the shards listed in a manifest, as dicts of torch tensors.

    OUT/
      manifest.json                  splits, normalization, tensor list (read once, in the constructor)
      shards/<session>.safetensors   memory-mapped lazily, per process (replay/shardmap.py); windows are views

OUT may be a URL (``s3://bucket/tensors``): the manifest is read through fsspec and each shard is copied once,
on first use, into a local cache folder (``cache_dir``), then mapped like a local one.

Why map-style with lazy handles: DataLoader workers and DistributedSampler split indices, and each worker
process opens its own memory-mapped handles on first use (a handle made before a fork is never shared), so
iterating a dataset larger than RAM keeps the heap flat — pages of the shards are the OS's file cache.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replay import active_text
from replay.errors import DatasetError, EmptyDataset
from replay.manifest import SPLITS, read_manifest
from replay.shardmap import map_shard
from replay.storage import default_cache_dir, is_url

MODALITIES: dict[str, tuple[str, ...]] = {
    "pose": ("pose", "pose.mask"),
    "hands": ("hands", "hands.mask"),
    "controls": ("controls", "controls.mask"),
    "audio": ("audio.mel", "audio.mask"),
    "audio.pcm": ("audio.pcm", "audio.mask"),
    "camera": (),  # every camera.<name>, its .frame and .mask
    "text": ("text.internal", "text.internal.mask", "text.external", "text.external.mask"),
    "text.active": active_text.SOURCE,  # derived when read: the instruction in force (replay/active_text.py)
}
ALWAYS = ("time_ns",)
MAX_OPEN = 64  # mapped shards per process (each worker its own); the least recently opened is closed first
SessionFilter = str | Iterable[str] | Callable[[str], bool] | None


class SessionDataset(torch.utils.data.Dataset):
    """Windows of ``window`` steps, every ``stride`` steps, over the sessions of one split.

    ``modalities``: None = every tensor in the shards; else names from MODALITIES or exact tensor names
    (``camera.left``). ``sessions``: a glob (``"kitchen-*"``), a list of names or a predicate.
    ``max_windows_per_session``: keep at most this many windows per session, drawn with ``seed``.
    ``shuffle``: order the windows by a permutation drawn with ``seed`` (else session, then start).
    A session shorter than ``window`` gives one short window; ``collate`` pads it and marks ``step_mask``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        window: int = 64,
        stride: int | None = None,
        modalities: list[str] | None = None,
        seed: int = 0,
        sessions: SessionFilter = None,
        max_windows_per_session: int | None = None,
        shuffle: bool = False,
        max_open: int = MAX_OPEN,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.root: str | Path = root if is_url(root) else Path(root)
        self.manifest: dict[str, Any] = read_manifest(self.root)
        # a URL's shards are copied once into a local cache (they must be files to be memory-mapped)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir(str(self.root))
        self.max_open = max_open
        if split not in SPLITS:
            raise DatasetError(f"split {split!r} does not exist; use one of {', '.join(SPLITS)}")
        if window < 1 or (stride is not None and stride < 1):
            raise DatasetError(f"window and stride must be >= 1 (got window={window}, stride={stride})")
        self.split, self.window, self.stride, self.seed = split, window, stride or window, seed
        self.names = self._tensor_names(modalities)
        self.active_text = modalities is not None and "text.active" in modalities
        self._last_events: dict[str, np.ndarray] = {}
        self.sessions = self._select(split, sessions)
        self.windows = self._windows(max_windows_per_session, shuffle)
        self._norm = self._normalization()
        # keep only what reading needs of the chosen sessions: the parsed entries of thousands of sessions would
        # otherwise stay in every worker's heap (and be pickled to each spawned one)
        keep = ("shard", "shard_bytes", "steps", "split")
        self.manifest["sessions"] = {
            n: {k: self.manifest["sessions"][n][k] for k in keep if k in self.manifest["sessions"][n]}
            for n in self.sessions
        }
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    # --- construction -------------------------------------------------------------------------------

    def _tensor_names(self, modalities: list[str] | None) -> list[str]:
        available = list(self.manifest.get("tensors", {}))
        if modalities is None:
            return available
        names: list[str] = list(ALWAYS)
        for mod in modalities:
            if mod == "camera":
                names += [n for n in available if n.startswith("camera.")]
            elif mod in MODALITIES:
                names += list(MODALITIES[mod])
            elif mod in available:
                names.append(mod)
            else:
                raise DatasetError(
                    f"modality {mod!r} is unknown; use {', '.join(MODALITIES)} or a tensor name "
                    f"({', '.join(available) or 'the manifest lists none'})"
                )
        missing = [n for n in names if n not in available]
        if missing and available:
            raise DatasetError(
                f"tensors {missing} are not in {self.root} (converted with other settings?); it has {available}"
            )
        return list(dict.fromkeys(names))

    def _select(self, split: str, wanted: SessionFilter) -> list[str]:
        all_names = sorted(self.manifest.get("sessions", {}))
        in_split = list(self.manifest.get("splits", {}).get(split, []))
        self.empty_reason = ""
        if wanted is None:
            chosen = in_split
        else:
            if isinstance(wanted, str):
                label, match = repr(wanted), (lambda n: fnmatch.fnmatchcase(n, wanted))
            elif callable(wanted):
                label, match = "predicate", wanted
            else:
                wanted_set = set(wanted)
                label, match = f"{sorted(wanted_set)}", wanted_set.__contains__
            overall = [n for n in all_names if match(n)]
            if not overall:
                raise EmptyDataset(f"filter {label} matched 0 of {len(all_names)} sessions in {self.root}")
            chosen = [n for n in in_split if match(n)]
            if not chosen:
                where = {s: [n for n in overall if n in self.manifest["splits"].get(s, [])] for s in SPLITS}
                self.empty_reason = (
                    f"filter {label} matched {len(overall)} session(s), none in split {split!r} "
                    f"({', '.join(f'{s} {len(v)}' for s, v in where.items())})"
                )
        if not chosen and not self.empty_reason:
            counts = ", ".join(f"{s} {len(self.manifest['splits'].get(s, []))}" for s in SPLITS)
            self.empty_reason = (
                f"split {split!r} has 0 sessions: {len(all_names)} session(s) converted ({counts})"
                + (f"; {self.manifest['notes'][0]}" if self.manifest.get("notes") else "")
            )
        return chosen

    def _windows(self, cap: int | None, shuffle: bool) -> list[tuple[str, int, int]]:
        rng = np.random.default_rng(self.seed)
        out: list[tuple[str, int, int]] = []
        blocks = self.manifest.get("split_ranges", {}).get(
            self.split, {}
        )  # time-block splits (replay/splits.py)
        for name in self.sessions:
            steps = int(self.manifest["sessions"][name]["steps"])
            mine = []
            for first, end in blocks.get(name, [[0, steps]]):
                n = end - first
                if 0 < n <= self.window:
                    mine.append((name, first, n))
                elif n > 0:
                    mine += [(name, s, self.window) for s in range(first, end - self.window + 1, self.stride)]
            if cap is not None and len(mine) > cap:
                keep = np.sort(rng.choice(len(mine), size=cap, replace=False))
                mine = [mine[i] for i in keep]
            out += mine
        if shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def _normalization(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        norm = self.manifest.get("normalization", {})
        out = {}
        for key in ("pose", "hands", "audio.mel"):
            if key in norm and key in self.names:
                mean = np.asarray(norm[key]["mean"], dtype=np.float32)
                std = np.asarray(norm[key]["std"], dtype=np.float32)
                out[key] = (mean, std)
        return out

    # --- access -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.windows)

    def _shard(self, name: str) -> dict[str, np.ndarray]:
        if self._pid != os.getpid():  # a forked worker: maps of the parent are not ours to use
            self._handles, self._pid = {}, os.getpid()
        arrays = self._handles.get(name)
        if arrays is None:
            while len(self._handles) >= self.max_open:
                self._handles.pop(next(iter(self._handles)))
            arrays = self._handles[name] = map_shard(self._shard_path(name))
        return arrays

    def _shard_path(self, name: str) -> Path:
        entry = self.manifest["sessions"][name]
        if not isinstance(self.root, str):
            return self.root / entry["shard"]
        from replay.storage import fetch_cached

        return fetch_cached(self.root, entry["shard"], int(entry["shard_bytes"]), self.cache_dir)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, start, length = self.windows[index]
        shard = self._shard(name)
        item: dict[str, Any] = {"session": name, "start": start}
        values: dict[str, np.ndarray] = {}
        for tensor in self.names:
            try:
                view = shard[tensor]
            except KeyError:
                raise DatasetError(
                    f"shard of session {name!r} lacks tensor {tensor!r}; convert it again with `vrcap replay`"
                ) from None
            values[tensor] = view[start : start + length]  # a view of the page cache: nothing read yet
        for tensor, value in values.items():
            item[tensor] = torch.from_numpy(self._prepare(tensor, value, values))
        if self.active_text:
            for key, value in zip(active_text.NAMES, self._active(name, start, length), strict=True):
                item[key] = torch.from_numpy(value)
        return item

    def _active(self, name: str, start: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The instruction in force at each step of a window (replay/active_text.py); the per-session index of
        the last instruction is computed once per session and kept (one int64 per step)."""
        shard = self._shard(name)
        last = self._last_events.get(name)
        if last is None:
            last = self._last_events[name] = active_text.last_event(np.asarray(shard["text.internal.mask"]))
        return active_text.active_window(shard["text.internal"], last, start, length)

    def __getitems__(self, indices: list[int]) -> Sequence[dict[str, Any]]:
        """A whole batch at once (DataLoader calls this when it exists): one stack and one normalization per
        tensor instead of one per window. Returns the items — views of the batch, made when asked for — and
        ``collate`` takes the batch ready-made from them (``batch``), so any other collate function still works.

        Why one buffer: every tensor of the batch is a view of one byte buffer, written in place (no
        temporaries). In a DataLoader worker the buffer is allocated in shared memory and the batch pickles as
        that one buffer plus its layout: torch would otherwise hand each of the ~10 tensors across on its own
        file descriptor, and those hand-offs, not the arithmetic, capped two workers below one process.
        """
        windows = [self.windows[i] for i in indices]
        length = max(w[2] for w in windows)
        lengths = np.array([w[2] for w in windows])
        raw = {tensor: self._stack(tensor, windows, length) for tensor in self.names}
        derived: dict[str, np.ndarray] = {}  # written as they are: no normalization
        if self.active_text:
            parts = [self._active(name, start, n) for name, start, n in windows]
            for j, key in enumerate(active_text.NAMES):
                first = parts[0][j]
                full = np.zeros((len(windows), length, *first.shape[1:]), first.dtype)
                for i, part in enumerate(parts):
                    full[i, : len(part[j])] = part[j]
                derived[key] = full
        layout: list[tuple[str, str, tuple[int, ...], int]] = []  # (name, numpy dtype, shape, byte offset)
        nbytes = 0
        for name, dtype, shape in [
            ("start", "int64", (len(windows),)),
            ("step_mask", "bool", (len(windows), length)),
            *((t, self._out_dtype(t, v.dtype), v.shape) for t, v in raw.items()),
            *((t, v.dtype.name, v.shape) for t, v in derived.items()),
        ]:
            nbytes = -(-nbytes // 8) * 8  # every tensor 8-byte aligned
            layout.append((name, dtype, tuple(shape), nbytes))
            nbytes += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        shared = torch.utils.data.get_worker_info() is not None
        buffer = (
            torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(max(nbytes, 1)))
            if shared
            else torch.empty(max(nbytes, 1), dtype=torch.uint8)
        )
        out = _views(buffer, layout)
        arrays = {name: out[name].numpy() for name, *_ in layout}
        arrays["start"][:] = [w[1] for w in windows]
        arrays["step_mask"][:] = np.arange(length)[None, :] < lengths[:, None]
        for tensor, value in raw.items():
            self._prepare_into(tensor, value, raw, arrays[tensor])
        for tensor, value in derived.items():
            arrays[tensor][...] = value
        extra = {"session": [w[0] for w in windows]}
        batch: dict[str, Any] = PackedBatch(buffer, layout, extra) if shared else {**extra, **out}
        return _BatchItems(batch, windows, [*raw, *derived])

    def _stack(self, tensor: str, windows: list[tuple[str, int, int]], length: int) -> np.ndarray:
        """The raw windows of one tensor, zero-padded to ``length``: (B, length, ...)."""
        parts = []
        for name, start, n in windows:
            view = self._shard(name).get(tensor)
            if view is None:
                raise DatasetError(
                    f"shard of session {name!r} lacks tensor {tensor!r}; convert it again with `vrcap replay`"
                )
            part = view[start : start + n]
            if n < length:
                part = np.concatenate([part, np.zeros((length - n, *part.shape[1:]), part.dtype)])
            parts.append(part)
        return np.stack(parts)

    def _out_dtype(self, name: str, dtype: np.dtype) -> str:
        """What ``_prepare`` makes of a tensor of ``dtype``."""
        if name in self._norm:
            return np.result_type(dtype, np.float32).name
        if name.startswith("camera.") and dtype == np.uint8:
            return "float32"
        if name.startswith("text.") and dtype == np.int32:
            return "int64"
        return np.dtype(dtype).name

    def _prepare_into(
        self, name: str, value: np.ndarray, values: dict[str, np.ndarray], out: np.ndarray
    ) -> None:
        """``_prepare`` written into ``out``: the same operations in the same order, so the same bits."""
        if name in self._norm:
            mean, std = self._norm[name]
            np.subtract(value, mean, out=out)
            np.divide(out, std, out=out)
            mask = values.get(f"{name}.mask", values.get(f"{name.split('.')[0]}.mask"))
            if mask is not None:
                m = mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))
                np.copyto(out, np.float32(0.0), where=~np.broadcast_to(m, out.shape))
            return
        if name.startswith("camera.") and value.dtype == np.uint8:
            np.multiply(value, np.float32(1 / 127.5), out=out)
            np.subtract(out, np.float32(1.0), out=out)
            return
        np.copyto(out, value)

    def _prepare(self, name: str, value: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
        """Numpy on purpose: on windows this small, each torch op costs more in dispatch than in arithmetic."""
        if name in self._norm:
            mean, std = self._norm[name]
            out = (value - mean) / std
            mask = values.get(
                f"{name}.mask", values.get(f"{name.split('.')[0]}.mask")
            )  # audio.mel: audio.mask
            if mask is not None:
                m = mask.reshape(mask.shape + (1,) * (out.ndim - mask.ndim))
                out = np.where(m, out, np.float32(0.0))  # masked: 0 (even over a NaN), never a value
            return out
        if name.startswith("camera.") and value.dtype == np.uint8:
            return value.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
        if name.startswith("text.") and value.dtype == np.int32:
            return value.astype(np.int64)
        return np.array(value)  # a copy: the map is read-only and torch wants memory it may own

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}  # maps stay in their process; spawn workers make their own
        return state

    # --- explaining ---------------------------------------------------------------------------------

    def describe(self) -> str:
        """One paragraph with the numbers: sessions, steps, windows, tensors; or why it is empty."""
        if not self.windows:
            return (
                f"{self.root} [{self.split}]: 0 windows: {self.empty_reason or 'every session has 0 steps'}"
            )
        steps = sum(self.manifest["sessions"][n]["steps"] for n in self.sessions)
        hz = self.manifest.get("step_hz", 30)
        return (
            f"{self.root} [{self.split}]: {len(self.sessions)} session(s), {steps} steps "
            f"({steps / hz:.1f} s at {hz:g} Hz), {len(self.windows)} windows of {self.window} steps "
            f"(stride {self.stride}); tensors: {', '.join(self.names)}"
        )

    def check_batch_size(self, batch_size: int, world_size: int = 1) -> list[str]:
        """Warnings (with numbers) when the data is thin for this batch size; EmptyDataset when there is none."""
        n = len(self.windows)
        if n == 0:
            raise EmptyDataset(f"{self.describe()}")
        per_step = batch_size * world_size
        notes = []
        if n < per_step:
            notes.append(
                f"{n} windows < batch_size {batch_size} x world_size {world_size} = {per_step}: not one full batch "
                f"per epoch (drop_last=True gives 0 steps); lower batch_size to <= {max(1, n // world_size)} or "
                f"shorten window (now {self.window}) / stride (now {self.stride})"
            )
        elif n // per_step < 10:
            notes.append(
                f"only {n // per_step} full batch(es) per epoch ({n} windows / ({batch_size} x {world_size})); "
                "a smaller stride or more sessions gives more"
            )
        return notes


def _views(
    buffer: torch.Tensor, layout: list[tuple[str, str, tuple[int, ...], int]]
) -> dict[str, torch.Tensor]:
    """The batch's tensors as views of one byte buffer."""
    out = {}
    for name, dtype, shape, offset in layout:
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        out[name] = buffer[offset : offset + size].view(_TORCH_DTYPES[dtype]).view(shape)
    return out


_TORCH_DTYPES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def _unpack(buffer: torch.Tensor, layout: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **_views(buffer, layout)}


class PackedBatch(dict):  # type: ignore[type-arg]
    """A batch made in a DataLoader worker: a plain dict of tensors that pickles as its one shared buffer and
    the layout, and arrives in the main process as a plain dict of views of that buffer."""

    def __init__(self, buffer: torch.Tensor, layout: list[Any], extra: dict[str, Any]) -> None:
        super().__init__(_unpack(buffer, layout, extra))
        self._packed = (buffer, layout, extra)

    def __reduce__(self) -> tuple[Any, ...]:
        return _unpack, self._packed


class _BatchItems(Sequence):  # type: ignore[type-arg]
    """Items of one batch made by ``SessionDataset.__getitems__``, with the collated batch alongside; each
    item (views of the batch, trimmed to its window) is made only when asked for."""

    def __init__(
        self, batch: dict[str, Any], windows: list[tuple[str, int, int]], tensors: list[str]
    ) -> None:
        self.batch: dict[str, Any] | None = batch
        self._windows, self._tensors = windows, tensors

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        name, start, n = self._windows[i]
        assert self.batch is not None
        return {"session": name, "start": start, **{t: self.batch[t][i, :n] for t in self._tensors}}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch, padding the time axis to the longest with zeros; ``step_mask`` marks real steps."""
    ready = getattr(items, "batch", None)
    if ready is not None:
        return ready
    if not items:
        raise DatasetError("collate got an empty list of items")
    length = max(int(item["time_ns"].shape[0]) if "time_ns" in item else 0 for item in items)
    batch: dict[str, Any] = {"session": [item["session"] for item in items]}
    batch["start"] = torch.tensor([int(item["start"]) for item in items], dtype=torch.int64)
    lengths = [int(item["time_ns"].shape[0]) for item in items]
    batch["step_mask"] = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    for key in items[0]:
        if key in ("session", "start"):
            continue
        tensors = [item[key] for item in items]
        if all(t.shape[0] == length for t in tensors):
            batch[key] = torch.stack(tensors)
            continue
        padded = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
        for i, t in enumerate(tensors):
            padded[i, : t.shape[0]] = t
        batch[key] = padded
    return batch
