"""The training data: replay's SessionDataset, a resumable sampler, and the checks that the data fits the model.

Resuming exactly needs the data order to be a pure function of (seed, epoch) and the position in it to be a
number in the checkpoint. ``StepSampler`` draws one permutation per epoch from a generator seeded by
(seed, epoch), cuts it into global batches (one per optimizer step: micro-batch x accumulation x world size)
and gives this rank its micro-batches of each. One process with accumulation 2 and two processes with
accumulation 1 therefore see the same windows in each step. It never ends: epochs follow one another inside
one DataLoader iterator, so workers prefetch across epoch boundaries instead of stalling there.
"""

from __future__ import annotations

import queue
import random
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from training.config import TrainConfig
from training.errors import DataMismatch, DatasetTooSmall, NoTargets
from vrcap.errors import UsageError
from vrcap.wording import plural

FEW_STEPS_PER_EPOCH = 10


class StepSampler(Sampler[list[int]]):
    def __init__(self, n: int, micro_batch: int, accum: int, world: int, rank: int, seed: int) -> None:
        self.n, self.micro, self.accum, self.world, self.rank, self.seed = (
            n,
            micro_batch,
            accum,
            world,
            rank,
            seed,
        )
        self.global_batch = micro_batch * accum * world
        self.steps_per_epoch = n // self.global_batch
        self.start = 0  # global batches consumed before this run (the checkpoint's data position)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        index = self.start
        while True:
            epoch, step = divmod(index, self.steps_per_epoch)
            order = self.order(epoch)
            for s in range(step, self.steps_per_epoch):
                batch = order[s * self.global_batch : (s + 1) * self.global_batch]
                for a in range(self.accum):  # micro-batch a of this rank: slot a * world + rank
                    slot = a * self.world + self.rank
                    yield batch[slot * self.micro : (slot + 1) * self.micro]
            index = (epoch + 1) * self.steps_per_epoch

    def position(self, consumed: int) -> dict[str, int]:
        """What the checkpoint stores after ``consumed`` more global batches than ``start``."""
        index = self.start + consumed
        epoch, step = divmod(index, self.steps_per_epoch)
        return {
            "global_batches": index,
            "epoch": epoch,
            "step_in_epoch": step,
            "global_batch": self.global_batch,
        }


def _seed_worker(worker_id: int) -> None:
    """Workers get torch's per-worker seed (base seed from our generator + id); numpy and random follow it."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class TrainData:
    dataset: Any
    manifest: dict[str, Any]
    sampler: StepSampler
    loader: DataLoader
    root: Path | None = None

    @property
    def windows(self) -> int:
        return self.sampler.n


def open_dataset(root: Path, cfg: TrainConfig, split: str, seed: int) -> tuple[Any, dict[str, Any], Any]:
    """(SessionDataset, manifest, collate) for one split; replay's errors pass through (they are VrcapErrors)."""
    from replay.dataset import SessionDataset, collate
    from replay.manifest import read_manifest

    manifest = read_manifest(root)
    modalities = list(cfg.data.modalities) or default_modalities(manifest)
    stride = cfg.data.stride or cfg.data.window
    dataset = SessionDataset(
        root, split=split, window=cfg.data.window, stride=stride, modalities=modalities, seed=seed
    )
    return dataset, manifest, collate


def default_modalities(manifest: dict[str, Any]) -> list[str]:
    """Every modality the model reads that the shards hold (not audio.pcm: the model reads mel frames)."""
    from replay.dataset import MODALITIES

    available = set(manifest.get("tensors", {}))
    wanted = ["pose", "hands", "controls", "audio", "text"]
    out = [m for m in wanted if all(t in available for t in MODALITIES[m])]
    if all(t in available for t in MODALITIES["text.active"]):
        out.append("text.active")  # the instruction in force at each step, derived when read
    if any(t.startswith("camera.") for t in available):
        out.append("camera")
    return out


def build_data(
    root: Path, cfg: TrainConfig, world_size: int, rank: int, accum: int, micro: int | None = None
) -> TrainData:
    dataset, manifest, collate = open_dataset(root, cfg, cfg.data.split, cfg.seed)
    check_fits(dataset, manifest, cfg, root)
    check_split_gap(manifest, cfg, root)
    sampler = StepSampler(len(dataset), micro or cfg.data.batch_size, accum, world_size, rank, cfg.seed)
    if sampler.steps_per_epoch == 0:
        stride = cfg.data.stride or cfg.data.window
        raise DatasetTooSmall(len(dataset), sampler.global_batch, cfg.data.split, cfg.data.window, stride)
    if sampler.steps_per_epoch < FEW_STEPS_PER_EPOCH and rank == 0:
        print(
            f"note: only {plural(sampler.steps_per_epoch, 'optimizer step')} per epoch ({len(dataset)} windows, global batch "
            f"{sampler.global_batch}): the model will see the same windows often; record more sessions for "
            "real training",
            file=sys.stderr,
        )
    workers = cfg.data.num_workers
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.seed * 1009 + rank),
        pin_memory=torch.cuda.is_available(),
    )
    return TrainData(dataset, manifest, sampler, loader, root)


class BackgroundBatches:
    """Batches loaded ``depth`` ahead by one thread of this process: the step no longer waits for them.

    Why a thread and not a DataLoader worker on small machines: on 2 cores a worker process takes a core from
    PyTorch's spinning compute threads and the step slows far more than loading costs (0.69x measured), while
    loading here is mostly tensor copies that release the GIL. One thread keeps the order exactly the
    sampler's. An error while loading is raised in the training loop, not lost in the thread.
    """

    _DONE = object()

    def __init__(self, source: Iterable[Any], depth: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(iter(source),), name="batch-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
            return
        self._put(self._DONE)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- does the data fit the model? --------------------------------------------------------------------------------


def data_shapes(item: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The model-config fields a dataset decides, read from one item (shapes) and the manifest (vocabulary)."""
    found: dict[str, Any] = {}
    cameras = sorted(k.split(".", 1)[1] for k in item if k.startswith("camera.") and k.count(".") == 1)
    found["model.cameras"] = cameras
    if cameras:
        h, w = item[f"camera.{cameras[0]}"].shape[-2:]
        found["model.camera_height"], found["model.camera_width"] = int(h), int(w)
    if "audio.mel" in item:
        m, bins = item["audio.mel"].shape[-2:]
        found["model.mel_frames"], found["model.mel_bins"] = int(m), int(bins)
    for key in ("text.internal", "text.external"):
        if key in item:
            found["model.text_len"] = int(item[key].shape[-1])
    vocab = (manifest.get("tokenizer") or {}).get("vocab_size")
    if vocab is not None:
        found["model.vocab_size"] = int(vocab)
    return found


def check_fits(dataset: Any, manifest: dict[str, Any], cfg: TrainConfig, root: Path) -> None:
    """Refuse a dataset whose shapes differ from the model config, naming the first field that differs."""
    if len(dataset) == 0:
        reason = (
            dataset.describe() if hasattr(dataset, "describe") else f"the {cfg.data.split!r} split is empty"
        )
        raise UsageError(f"no training windows: {reason}; record and convert sessions, or set data.split")
    found = data_shapes(dataset[0], manifest)
    model = cfg.model
    if model.cameras and sorted(model.cameras) != found["model.cameras"]:  # cameras: [] ignores cameras
        raise DataMismatch("model.cameras", sorted(model.cameras), found["model.cameras"], root)
    for key, value in found.items():
        if key == "model.cameras" or (key.startswith("model.camera_") and not model.cameras):
            continue
        mine = getattr(model, key.split(".", 1)[1])
        if mine != value and not (key == "model.text_len" and value <= mine):
            raise DataMismatch(key, mine, value, root)


def check_split_gap(manifest: dict[str, Any], cfg: TrainConfig, root: Path) -> None:
    """Time-block splits leak when a window is longer than the gap between blocks: refuse that."""
    rule = manifest.get("split_rule", {})
    if rule.get("mode") == "time_blocks" and int(rule.get("gap_steps", 0)) < cfg.data.window:
        raise UsageError(
            f"{root} is split into time blocks {rule.get('gap_steps')} steps apart, shorter than data.window "
            f"({cfg.data.window}): windows would reach across splits; convert again with "
            f"split.gap_steps={cfg.data.window} or lower data.window"
        )


def check_targets(counts: dict[str, float], weights: dict[str, float], split: str) -> None:
    """A weighted output without a single target in the split would train on nothing and print loss 0: refuse."""
    empty = [name for name, w in weights.items() if w > 0 and counts.get(name, 0) == 0]
    if empty and len(empty) == sum(w > 0 for w in weights.values()):
        raise NoTargets(empty, split)
    if empty:
        print(
            f"note: no {', '.join(empty)} targets in the {split!r} split: those losses stay 0",
            file=sys.stderr,
        )
