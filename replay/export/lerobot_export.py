"""Sessions as one LeRobot v3.0 dataset: parquet steps, an mp4 per camera, and the metadata LeRobot loads.

    OUT/
    ├── meta/info.json                          features, counts, fps, path templates (codebase_version v3.0)
    ├── meta/stats.json                         min/max/mean/std/count per feature
    ├── meta/tasks.parquet                      task string (index) → task_index
    ├── meta/episodes/chunk-000/file-000.parquet  one row per episode: length, tasks, where its rows and frames are
    ├── data/chunk-000/file-NNN.parquet         one file per session: the steps of its episodes
    └── videos/observation.images.<cam>/chunk-000/file-NNN.mp4   one file per session and camera

Episodes: one per session (``lerobot.episodes=session``), or one per instruction segment (``task``: an
instruction starts an episode that lasts until the next). Tasks come from instruction annotations: a step
has the latest instruction at or before it as its task, and steps before any instruction the task
"no instruction". ``action`` is the next step's state (the last step repeats its own): what a policy should
make happen next. The first session fixes the features; a session whose state streams or cameras differ is
not exported (one line), and a session that fails half-way has its files removed, so the dataset holds only
whole sessions.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from replay.export.config import LeRobotConfig
from replay.export.errors import SessionNotExported
from replay.export.lerobot_jpeg import JpegCopier
from replay.export.lerobot_meta import (
    DATA_PATH,
    EPISODES_PATH,
    VIDEO_PATH,
    EpisodeRecord,
    RunningStats,
    chunk_of,
    features,
    info_json,
    video_key,
    write_episodes,
    write_json,
    write_tasks,
)  # fmt: skip
from replay.export.lerobot_steps import Step, StepSampler, camera_streams, state_names, state_streams
from replay.export.lerobot_video import CameraWorker, fps_fraction
from replay.export.source import SessionSource
from vrcap.errors import VrcapError
from vrcap.packets import TIME

NO_INSTRUCTION = "no instruction"
ROWS_PER_BATCH = 256


class _Layout:
    """What the first session fixed: state names and camera shapes. Later sessions must match it."""

    def __init__(self, source: SessionSource) -> None:
        streams = source.meta.streams
        self.state = state_streams(streams)
        self.names = state_names(self.state)
        self.cameras = camera_streams(streams)
        self.shapes = {video_key(c.name): (int(c.shape[0]), int(c.shape[1])) for c in self.cameras}

    def mismatch(self, other: _Layout) -> str | None:
        if other.names != self.names:
            return (
                "its pose/hand/controls streams differ from the first session's; export it to its own dataset"
            )
        if other.shapes != self.shapes:
            return f"its cameras {other.shapes} differ from the first session's {self.shapes}"
        return None


class LeRobotWriter:
    """The dataset being built in ``root`` (a staged folder): counters, tasks, episodes, statistics."""

    def __init__(self, root: Path, config: LeRobotConfig) -> None:
        self.root, self.config = root, config
        self.layout: _Layout | None = None
        self.tasks: dict[str, int] = {}
        self.episodes: list[EpisodeRecord] = []
        self.frames = 0
        self.files = 0
        self.stats: dict[str, RunningStats] = {}
        # video key -> what its frames decode to, when not the configured one
        self.pix_fmts: dict[str, str] = {}

    def task_index(self, task: str) -> int:
        return self.tasks.setdefault(task, len(self.tasks))

    def add_session(self, source: SessionSource, progress: Any) -> None:
        layout = _Layout(source)
        if self.layout is None:
            self.layout = layout
        elif (problem := self.layout.mismatch(layout)) is not None:
            raise SessionNotExported(source.path, problem)
        number = self.files
        chunk, file = chunk_of(number)
        data_path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        videos = {key: self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                  for key in layout.shapes}  # fmt: skip
        # A session that fails half-way must leave the dataset as it was: counters, tasks and stats roll back.
        tasks, episodes, frames = dict(self.tasks), len(self.episodes), self.frames
        stats = {k: _copy(v) for k, v in self.stats.items()}
        try:
            _SessionExport(self, source, layout, number, data_path, videos).run(progress)
        except BaseException:
            self.tasks, self.frames, self.stats = tasks, frames, stats
            del self.episodes[episodes:]
            for path in (data_path, *videos.values()):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        self.files += 1

    def finish(self) -> dict[str, Any]:
        assert self.layout is not None
        cfg = self.config
        keys = list(self.layout.shapes)
        write_tasks(self.root / "meta/tasks.parquet", list(self.tasks))
        write_episodes(self.root / EPISODES_PATH, self.episodes, keys, cfg.fps)
        pix_fmts = {key: self.pix_fmts.get(key, cfg.pix_fmt) for key in keys}
        feats = features(self.layout.names, self.layout.shapes, cfg.fps, cfg.codec, pix_fmts)
        info = info_json(
            feats, cfg.fps, len(self.episodes), self.frames, len(self.tasks), self.files, len(keys)
        )
        write_json(self.root / "meta/info.json", info)
        stats = {}
        for name, running in self.stats.items():
            stats[name] = running.to_dict((3, 1, 1) if name in self.layout.shapes else None)
        write_json(self.root / "meta/stats.json", stats)
        return {"episodes": len(self.episodes), "frames": self.frames, "tasks": list(self.tasks)}


def _copy(stats: RunningStats) -> RunningStats:
    return RunningStats(stats.count, np.copy(stats.total), np.copy(stats.squares), np.copy(stats.low),
                        np.copy(stats.high))  # fmt: skip


class _SessionExport:
    """One session: steps → parquet rows (batched) and video frames, split into episodes as configured."""

    def __init__(self, ds: LeRobotWriter, source: SessionSource, layout: _Layout, number: int, data_path: Path,
                 videos: dict[str, Path]) -> None:  # fmt: skip
        self.ds, self.source, self.layout, self.number = ds, source, layout, number
        self.data_path, self.videos = data_path, videos
        self.rows: list[tuple[Step, int]] = []  # (step, task index) awaiting the next step (its action)
        self.batch: dict[str, list[Any]] = {}
        self.episode: EpisodeRecord | None = None
        self.session_steps = 0

    def run(self, progress: Any) -> None:
        import pyarrow.parquet as pq

        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        self.cameras: dict[str, CameraWorker | JpegCopier] = {}
        config = self.ds.config
        try:
            for key, path in self.videos.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                height, width = self.layout.shapes[key]
                stats = self.ds.stats.setdefault(key, RunningStats())
                if config.codec == "mjpeg":
                    self.cameras[key] = JpegCopier(path, width, height, fps_fraction(config.fps), stats)
                else:
                    self.cameras[key] = CameraWorker(path, width, height, config, stats)
            with pq.ParquetWriter(self.data_path, _schema(len(self.layout.names))) as self.writer:
                self._steps(progress)
        except BaseException:
            for camera in self.cameras.values():
                with contextlib.suppress(Exception):  # the first error is the one to report
                    camera.close()
            raise
        for key, camera in self.cameras.items():
            camera.close()  # waits for the last frames; raises a camera's error
            if isinstance(camera, JpegCopier) and camera.frames:
                self.ds.pix_fmts.setdefault(key, camera.pix_fmt)

    def _steps(self, progress: Any) -> None:
        times = self.source.reader.index.times
        if not times.size:
            raise SessionNotExported(self.source.path, "it holds no frames")
        sampler = StepSampler(self.layout.state, self.layout.cameras, int(times[0]), self.ds.config.fps)
        last_t = int(times[0])
        reader = self.source
        for packet in reader.reader.packets():
            for sample in reader.packet_samples(packet):
                sampler.add(sample)
            t = int(packet[TIME])
            if progress is not None:
                progress((t - last_t) / 1e9)
            last_t = t
            for step in sampler.ready(t):
                self._add(step)
        for step in sampler.finish(last_t):
            self._add(step)
        self._flush_rows(final=True)
        self._close_episode()

    def _add(self, step: Step) -> None:
        cfg = self.ds.config
        task = step.instruction or NO_INSTRUCTION
        split = cfg.episodes == "task" and step.new_instruction and self.episode is not None
        if split:
            self._flush_rows(final=True)  # the last step of the old episode takes its own state as action
        if self.episode is None or split:
            self._close_episode()
            self.episode = EpisodeRecord(len(self.ds.episodes), [], 0, self.number, self.ds.frames,
                                         self.session_steps)  # fmt: skip
            self.episode.stats = {"observation.state": RunningStats(), "action": RunningStats()}
        if task not in self.episode.tasks:
            self.episode.tasks.append(task)
        for key, image in zip(self.layout.shapes, step.images, strict=True):
            self.cameras[key].put(image)
        self.rows.append((step, self.ds.task_index(task)))
        self.session_steps += 1
        self._flush_rows(final=False)

    def _flush_rows(self, final: bool) -> None:
        """Rows whose action is known (all but the last, or all when the episode ends) go to the batch."""
        assert self.episode is not None
        keep = 0 if final else 1
        while len(self.rows) > keep:
            step, task_index = self.rows.pop(0)
            action = self.rows[0][0].state if self.rows else step.state
            episode = self.episode
            frame_index = episode.length
            row = {"observation.state": step.state, "action": action,
                   "timestamp": np.float32(frame_index / self.ds.config.fps), "frame_index": frame_index,
                   "episode_index": episode.index, "index": self.ds.frames, "task_index": task_index}  # fmt: skip
            for name, value in row.items():
                self.batch.setdefault(name, []).append(value)
            episode.length += 1
            self.ds.frames += 1
        if len(self.batch.get("index", ())) >= ROWS_PER_BATCH or (final and self.batch):
            self._write_batch()

    def _write_batch(self) -> None:
        import pyarrow as pa

        assert self.episode is not None
        state = np.stack(self.batch["observation.state"]).astype(np.float32)
        action = np.stack(self.batch["action"]).astype(np.float32)
        n = state.shape[1]
        arrays = [
            pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), n),
            pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), n),
            pa.array(np.asarray(self.batch["timestamp"], np.float32)),
            *(pa.array(np.asarray(self.batch[c], np.int64)) for c in ("frame_index", "episode_index", "index",
                                                                       "task_index")),
        ]  # fmt: skip
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=_schema(n)))
        for name, values in (("observation.state", state), ("action", action)):
            self.ds.stats.setdefault(name, RunningStats()).add(values)
            self.episode.stats[name].add(values)
        for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            self.ds.stats.setdefault(name, RunningStats()).add(
                np.asarray(self.batch[name], np.float64)[:, None]
            )
        self.batch = {}

    def _close_episode(self) -> None:
        if self.episode is not None and self.episode.length:
            self.ds.episodes.append(self.episode)
        self.episode = None


def _schema(n: int) -> Any:
    import pyarrow as pa

    return pa.schema([
        ("observation.state", pa.list_(pa.float32(), n)), ("action", pa.list_(pa.float32(), n)),
        ("timestamp", pa.float32()), ("frame_index", pa.int64()), ("episode_index", pa.int64()),
        ("index", pa.int64()), ("task_index", pa.int64()),
    ])  # fmt: skip


def export_lerobot(sessions: list[Path], root: Path, config: LeRobotConfig, bar: Any,
                   failures: list[SessionNotExported]) -> dict[str, Any]:  # fmt: skip
    """Every session into the dataset at ``root``; sessions that cannot be exported go to ``failures``."""
    dataset = LeRobotWriter(root, config)
    for session in sessions:
        try:
            with SessionSource(session) as source:
                task = bar.add_task(session.name, total=max(source.duration_s(), 1e-9))
                dataset.add_session(source, lambda s, task=task: bar.advance(task, s))
        except SessionNotExported as exc:
            failures.append(exc)
        except VrcapError as exc:
            failures.append(SessionNotExported(session, str(exc)))
    if not dataset.episodes:
        return {"episodes": 0}
    return dataset.finish()
