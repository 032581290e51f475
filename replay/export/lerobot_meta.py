"""LeRobot v3.0 metadata: features, info.json, stats.json, tasks.parquet and the episodes table.

Written from LeRobot's v3.0 dataset format (codebase_version "v3.0"): file-based chunks
(``data/chunk-XXX/file-YYY.parquet``, ``videos/<key>/chunk-XXX/file-YYY.mp4``), episodes as rows of
``meta/episodes/chunk-000/file-000.parquet`` pointing into those files, tasks as a parquet table indexed by the
task string, and normalization statistics (min, max, mean, std, count) per feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
SCALARS = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
           "task_index": "int64"}  # fmt: skip
CODEC_NAMES = {"av1": "av1", "h264": "h264", "mjpeg": "mjpeg"}


def chunk_of(file_number: int) -> tuple[int, int]:
    return divmod(file_number, CHUNKS_SIZE)


def video_key(camera_stream: str) -> str:
    return "observation.images." + camera_stream.removeprefix("camera_")


def features(
    state_names: list[str],
    cameras: dict[str, tuple[int, int]],
    fps: float,
    codec: str,
    pix_fmt: str | dict[str, str] = "yuv420p",
) -> dict:
    """LeRobot's features table; ``pix_fmt`` is one for every camera or one per video key."""
    out: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [len(state_names)], "names": state_names},
        "action": {"dtype": "float32", "shape": [len(state_names)], "names": state_names},
    }
    for key, (height, width) in cameras.items():
        fmt = pix_fmt if isinstance(pix_fmt, str) else pix_fmt[key]
        out[key] = {
            "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": CODEC_NAMES[codec],
                     "video.pix_fmt": fmt, "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False},
        }  # fmt: skip
    for name, dtype in SCALARS.items():
        out[name] = {"dtype": dtype, "shape": [1], "names": None}
    return out


@dataclass
class RunningStats:
    """min, max, mean, std and count of a feature, accumulated batch by batch (float64 sums)."""

    count: int = 0
    total: Any = 0.0
    squares: Any = 0.0
    low: Any = None
    high: Any = None

    def add(self, values: np.ndarray, axis: int | tuple[int, ...] = 0, count: int | None = None) -> None:
        """Reduce ``values`` over ``axis``; ``count`` items (default: the length of axis 0) are added."""
        v = np.ascontiguousarray(values, dtype=np.float64)
        self.count += v.shape[0] if count is None else count
        self.total = self.total + np.add.reduce(v, axis=axis)
        self.squares = self.squares + np.add.reduce(v * v, axis=axis)
        lo, hi = np.minimum.reduce(v, axis=axis), np.maximum.reduce(v, axis=axis)
        self.low = lo if self.low is None else np.minimum(self.low, lo)
        self.high = hi if self.high is None else np.maximum(self.high, hi)

    def add_image(self, pixels: np.ndarray) -> None:
        """One image's (n, 3) pixels: mean and std over every pixel of every image, count in images (LeRobot's)."""
        v = np.ascontiguousarray(pixels, dtype=np.float64)
        self.count += 1
        self.total = self.total + v.mean(axis=0)
        self.squares = self.squares + (v * v).mean(axis=0)  # images have equal pixel counts: means of means
        lo, hi = v.min(axis=0), v.max(axis=0)
        self.low = lo if self.low is None else np.minimum(self.low, lo)
        self.high = hi if self.high is None else np.maximum(self.high, hi)

    def merge(self, other: RunningStats) -> None:
        if other.count == 0:
            return
        self.count += other.count
        self.total = self.total + other.total
        self.squares = self.squares + other.squares
        self.low = other.low if self.low is None else np.minimum(self.low, other.low)
        self.high = other.high if self.high is None else np.maximum(self.high, other.high)

    def to_dict(self, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        mean = np.asarray(self.total) / max(1, self.count)
        std = np.sqrt(np.maximum(np.asarray(self.squares) / max(1, self.count) - mean * mean, 0.0))

        def fmt(x: Any) -> Any:
            arr = np.asarray(x, np.float64)
            return (arr.reshape(shape) if shape else arr.reshape(-1)).tolist()

        return {"min": fmt(self.low), "max": fmt(self.high), "mean": fmt(mean), "std": fmt(std),
                "count": [self.count]}  # fmt: skip


@dataclass
class EpisodeRecord:
    index: int
    tasks: list[str]
    length: int
    file_number: int
    from_index: int
    from_step: int  # first step of the episode in its session's data and video files
    stats: dict[str, RunningStats] = field(default_factory=dict)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_tasks(path: Path, tasks: list[str]) -> None:
    """tasks.parquet as LeRobot reads it with pandas: the task string is the index, ``task_index`` a column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())}
    )
    pandas_meta = {
        "index_columns": ["task"], "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0",
    }  # fmt: skip
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_episodes(path: Path, episodes: list[EpisodeRecord], video_keys: list[str], fps: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {
        "episode_index": [e.index for e in episodes],
        "tasks": [e.tasks for e in episodes],
        "length": [e.length for e in episodes],
        "data/chunk_index": [chunk_of(e.file_number)[0] for e in episodes],
        "data/file_index": [chunk_of(e.file_number)[1] for e in episodes],
        "dataset_from_index": [e.from_index for e in episodes],
        "dataset_to_index": [e.from_index + e.length for e in episodes],
    }
    for key in video_keys:
        columns[f"videos/{key}/chunk_index"] = [chunk_of(e.file_number)[0] for e in episodes]
        columns[f"videos/{key}/file_index"] = [chunk_of(e.file_number)[1] for e in episodes]
        columns[f"videos/{key}/from_timestamp"] = [e.from_step / fps for e in episodes]
        columns[f"videos/{key}/to_timestamp"] = [(e.from_step + e.length) / fps for e in episodes]
    columns["meta/episodes/chunk_index"] = [0] * len(episodes)
    columns["meta/episodes/file_index"] = [0] * len(episodes)
    for feature in ("observation.state", "action"):
        for stat in ("min", "max", "mean", "std", "count"):
            columns[f"stats/{feature}/{stat}"] = [e.stats[feature].to_dict()[stat] for e in episodes]
    table = pa.table(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def info_json(features_: dict, fps: float, episodes: int, frames: int, tasks: int, files: int,
              cameras: int) -> dict:  # fmt: skip
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": "vrcap_human",
        "total_episodes": episodes,
        "total_frames": frames,
        "total_tasks": tasks,
        "total_videos": files * cameras,
        "total_chunks": chunk_of(max(files - 1, 0))[0] + 1,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None,
        "features": features_,
    }
