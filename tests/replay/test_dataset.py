"""SessionDataset and collate over a folder of small sessions: splits, windows, padding, workers, ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch.utils.data import DataLoader, DistributedSampler

from replay.config import load_replay_config
from replay.convert import convert_sessions
from replay.dataset import SessionDataset, collate
from replay.errors import DatasetError, EmptyDataset, ManifestError
from replay.manifest import SPLITS
from tests.replay.conftest import write_sim_session

NAMES = [f"s{i:02d}" for i in range(12)]
QUIET = {"progress": False, "log": lambda m: None}


@pytest.fixture(scope="module")
def tensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 sessions of 0.6 to 1.7 s (18 to 51 steps), poses, controls, audio and text; converted by 2 workers."""
    root = tmp_path_factory.mktemp("many")
    for i, name in enumerate(NAMES):
        write_sim_session(root / "sessions" / name, 0.6 + 0.1 * i, cameras=(), hands=False, seed=i)
    out = root / "t"
    convert_sessions([root / "sessions"], out, load_replay_config(), workers=2, **QUIET)
    return out


def test_splits_are_disjoint_complete_and_stable(tensors: Path, tmp_path: Path) -> None:
    manifest = json.loads((tensors / "manifest.json").read_text())
    splits = manifest["splits"]
    everyone = [n for s in SPLITS for n in splits[s]]
    assert sorted(everyone) == NAMES and len(set(everyone)) == len(NAMES)
    assert manifest["split_rule"]["mode"] == "sessions"  # 12 >= split.min_sessions (10)
    assert [len(splits[s]) for s in SPLITS] == [10, 1, 1]  # cut by count: val and test never empty
    again = convert_sessions([tensors.parent / "sessions"], tmp_path / "again", load_replay_config(), **QUIET)
    assert again["splits"] == splits  # another run, another folder: the same split
    salted = convert_sessions(
        [tensors.parent / "sessions"],
        tmp_path / "again",
        load_replay_config(overrides=["split.salt=x"]),
        **QUIET,
    )
    assert salted["splits"] != splits and sorted(n for s in SPLITS for n in salted["splits"][s]) == NAMES


def test_one_short_session_leaves_every_split_empty_with_the_reason(tmp_path: Path) -> None:
    """15 steps cannot hold three time blocks 64 steps apart: every split is empty, and the notes say why."""
    session = write_sim_session(tmp_path / "only", 0.5, cameras=(), hands=False)
    notes: list[str] = []
    manifest = convert_sessions(
        [session], tmp_path / "t", load_replay_config(), progress=False, log=notes.append
    )
    assert manifest["split_rule"]["mode"] == "time_blocks"
    assert manifest["splits"] == {"train": [], "val": [], "test": []}
    assert sum("is empty" in n and "split.gap_steps=64" in n for n in manifest["notes"]) == 3
    val = SessionDataset(tmp_path / "t", split="val", window=8)
    assert len(val) == 0 and "split 'val' has 0 sessions" in val.describe() and "gap_steps" in val.describe()
    with pytest.raises(EmptyDataset, match="split 'val' has 0 sessions"):
        val.check_batch_size(4)


def test_windows_items_and_normalization_round_trip(tensors: Path) -> None:
    ds = SessionDataset(tensors, split="train", window=16, stride=8)
    manifest = ds.manifest
    name, start, length = ds.windows[3]
    item = ds[3]
    raw = load_file(str(tensors / manifest["sessions"][name]["shard"]))
    assert item["session"] == name and item["start"] == start and length == 16
    assert torch.equal(item["time_ns"], torch.from_numpy(raw["time_ns"][start : start + 16]))
    mean = np.array(manifest["normalization"]["pose"]["mean"])
    std = np.array(manifest["normalization"]["pose"]["std"])
    back = item["pose"].numpy() * std + mean
    assert np.allclose(back, raw["pose"][start : start + 16], atol=1e-5)
    assert item["text.internal"].dtype == torch.int64 and item["audio.mel"].shape == (16, 3, 80)
    steps = sum(manifest["sessions"][n]["steps"] for n in ds.sessions)
    assert len(ds) == sum((manifest["sessions"][n]["steps"] - 16) // 8 + 1 for n in ds.sessions)
    assert f"{steps} steps" in ds.describe()


def test_collate_pads_short_windows_and_marks_steps(tensors: Path) -> None:
    ds = SessionDataset(tensors, split="train", window=40, modalities=["pose", "audio"])
    lengths = {length for _, _, length in ds.windows}
    assert min(lengths) < 40 and 40 in lengths  # the shortest sessions give one short window each
    short = next(i for i, w in enumerate(ds.windows) if w[2] < 40)
    full = next(i for i, w in enumerate(ds.windows) if w[2] == 40)
    batch = collate([ds[short], ds[full]])
    n = ds.windows[short][2]
    assert batch["step_mask"].tolist() == [[True] * n + [False] * (40 - n), [True] * 40]
    assert batch["pose"].shape == (2, 40, 3, 7) and not batch["pose"][0, n:].any()
    assert not batch["pose.mask"][0, n:].any() and batch["audio.mel"].shape == (2, 40, 3, 80)
    assert set(batch) == {
        "session",
        "start",
        "step_mask",
        "time_ns",
        "pose",
        "pose.mask",
        "audio.mel",
        "audio.mask",
    }


def test_a_batch_fetched_at_once_equals_one_collated_item_by_item(tensors: Path) -> None:
    """DataLoader uses __getitems__ (one stack per tensor); it must give exactly what per-item reads give."""
    ds = SessionDataset(tensors, split="train", window=40, modalities=["pose", "audio", "controls", "text"])
    picks = [*[i for i, w in enumerate(ds.windows) if w[2] < 40][:2], 0, len(ds) - 1]
    one_by_one = collate([ds[i] for i in picks])
    items = ds.__getitems__(picks)
    at_once = collate(items)
    assert set(one_by_one) == set(at_once)
    for key, value in one_by_one.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == at_once[key].dtype and torch.equal(value, at_once[key]), key
        else:
            assert value == at_once[key], key
    assert torch.equal(collate(list(items))["pose"], at_once["pose"])  # the items alone collate the same


def _rank_windows(tensors: str, rank: int, windows: int | None) -> list[tuple[str, int]]:
    """What rank ``rank`` of two reads, in its own process with two loader workers (as under torchrun)."""
    ds = SessionDataset(Path(tensors), split="train", window=8, stride=4, modalities=["pose", "controls"])
    if windows is not None:
        ds.windows = ds.windows[:windows]
    sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(ds, batch_size=5, sampler=sampler, num_workers=2, collate_fn=collate)
    return [pair for batch in loader for pair in zip(batch["session"], batch["start"].tolist(), strict=True)]


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_two_ranks_at_once_cover_every_window(tensors: Path, parity: str) -> None:
    """Both ranks run concurrently, each in its own process, over one mmap'ed shard folder. An odd count is
    kept, not trimmed: DistributedSampler then repeats exactly one window so both ranks take equal steps."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    ds = SessionDataset(tensors, split="train", window=8, stride=4, modalities=["pose", "controls"])
    n = len(ds) - (len(ds) % 2) - (1 if parity == "odd" else 0)
    assert n > 40
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        ranks = list(pool.map(_rank_windows, [str(tensors)] * 2, [0, 1], [n, n]))
    assert len(ranks[0]) == len(ranks[1]) == (n + 1) // 2
    seen = ranks[0] + ranks[1]
    expected = sorted((s, start) for s, start, _ in ds.windows[:n])
    assert sorted(set(seen)) == expected  # every window, on one rank or the other
    assert len(seen) - len(set(seen)) == n % 2  # and the one padding repeat when n is odd


def test_order_filters_and_caps_are_deterministic(tensors: Path) -> None:
    a = SessionDataset(tensors, window=8, seed=3, shuffle=True, max_windows_per_session=2)
    b = SessionDataset(tensors, window=8, seed=3, shuffle=True, max_windows_per_session=2)
    c = SessionDataset(tensors, window=8, seed=4, shuffle=True, max_windows_per_session=2)
    assert a.windows == b.windows != c.windows and len(a) == 2 * len(a.sessions)
    train = a.sessions
    one = SessionDataset(tensors, window=8, sessions=train[0])
    assert one.sessions == [train[0]]
    with pytest.raises(EmptyDataset, match=r"filter 'abc\*' matched 0 of 12 sessions"):
        SessionDataset(tensors, sessions="abc*")
    with pytest.raises(DatasetError, match="modality 'smell' is unknown"):
        SessionDataset(tensors, modalities=["smell"])


def test_batch_size_advice_has_numbers(tensors: Path) -> None:
    ds = SessionDataset(tensors, window=32, stride=32)
    n = len(ds)
    notes = ds.check_batch_size(n, world_size=2)
    assert notes and f"{n} windows < batch_size {n} x world_size 2 = {2 * n}" in notes[0]
    assert "full batch" in ds.check_batch_size(2)[0]


def test_a_newer_manifest_is_refused(tensors: Path, tmp_path: Path) -> None:
    manifest = json.loads((tensors / "manifest.json").read_text())
    manifest["version"] = 2
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"manifest version 2 is newer than this vrcap \(1\)"):
        SessionDataset(tmp_path)
    with pytest.raises(ManifestError, match="does not exist"):
        SessionDataset(tmp_path / "nowhere")


def _rss_anon_kb() -> int:
    text = Path("/proc/self/status").read_text()
    return int(next(line for line in text.splitlines() if line.startswith("RssAnon")).split()[1])


def test_heap_stays_flat_while_iterating(tensors: Path) -> None:
    """Shards are memory-mapped: iterating everything three times grows the heap by less than 5 MB."""
    ds = SessionDataset(tensors, window=8, stride=1)
    for i in range(min(len(ds), 50)):
        ds[i]  # warm up allocator pools and handles
    before = _rss_anon_kb()
    for _ in range(3):
        for i in range(len(ds)):
            ds[i]
    grown = (_rss_anon_kb() - before) / 1024
    print(f"{len(ds)} windows x 3: heap grew {grown:.1f} MB")
    assert grown < 5.0


def test_shards_open_lazily_within_the_handle_budget(tensors: Path) -> None:
    ds = SessionDataset(tensors, split="train", window=4, stride=4, modalities=["pose"], max_open=2)
    assert len(ds.sessions) >= 3 and not ds._handles  # opening reads the manifest only
    seen = set()
    for i in range(len(ds)):
        seen.add(ds.windows[i][0])
        assert ds[i]["pose"].shape == (4, 3, 7)
        assert len(ds._handles) <= 2
    assert len(seen) == len(ds.sessions) and len(ds._handles) == 2
    assert set(ds.manifest["sessions"]) == set(ds.sessions)  # only the chosen sessions stay parsed


def test_batches_from_two_workers_equal_batches_made_in_process(tensors: Path) -> None:
    """Workers pack each batch into one shared buffer (one file descriptor across, not one per tensor); what
    arrives must be the same tensors, bit for bit, as the batch made in this process."""
    ds = SessionDataset(tensors, split="train", window=12, stride=5, modalities=["pose", "audio", "text"])
    loader = DataLoader(ds, batch_size=7, num_workers=2, collate_fn=collate)
    got = list(loader)
    assert len(got) == -(-len(ds) // 7) >= 3
    for k, batch in enumerate(got):
        assert type(batch) is dict
        want = collate(ds.__getitems__(list(range(7 * k, min(len(ds), 7 * k + 7)))))
        assert set(batch) == set(want)
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == batch[key].dtype and torch.equal(value, batch[key]), key
            else:
                assert value == batch[key], key
