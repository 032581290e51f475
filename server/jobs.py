"""Routes: launch replay and training jobs, list them, read their state, metrics and logs, cancel them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query

from server.configcheck import check_replay, check_train, train_config_names, train_config_path
from server.deps import Authorized, JobsDep, RecorderDep, SettingsDep
from server.errors import ApiError
from server.jobrunner import new_job_id
from server.jobstore import JobRecord
from server.models import (
    DatasetList,
    Job,
    JobDetail,
    JobList,
    JobLog,
    MetricsSeries,
    ReplayJobIn,
    TrainConfigs,
    TrainJobIn,
)
from server.safepaths import checked
from server.sessions_api import session_path
from vrcap.names import check_session_name

router = APIRouter(prefix="/jobs", tags=["jobs"])
datasets_router = APIRouter(prefix="/datasets", tags=["jobs"])
MANIFEST = "manifest.json"


def job_body(job: JobRecord) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "state": job.state, "created_utc": job.created_utc,
        "finished_utc": job.finished_utc, "exit_code": job.exit_code, "error": job.error,
        "params": job.params, "output": job.output,
    }  # fmt: skip


@router.post("/replay", status_code=201, summary="Convert a session to tensor shards (vrcap replay)")
async def start_replay(
    body: ReplayJobIn, _: Authorized, settings: SettingsDep, jobs: JobsDep, recorder: RecorderDep
) -> Job:
    session = check_session_name(body.session)
    dataset = check_session_name(body.dataset or session)
    path = session_path(settings, session)
    if recorder.current is not None and recorder.current.active and recorder.current.session == session:
        raise ApiError(409, "session-recording", f"{session!r} is being recorded", "stop the recording first")
    items = check_replay(body.overrides)
    output = checked(settings.root_dir, settings.datasets_dir / dataset, "dataset")
    args = ["replay", "--to-tensors", str(output), str(path), *items]
    params = {"session": session, "dataset": dataset, "overrides": dict(body.overrides)}
    job = await jobs.start(new_job_id(), "replay", args, params, output, reads=session)
    return Job(**job_body(job))


@router.post("/train", status_code=201, summary="Train a model on a dataset (vrcap train)")
async def start_train(body: TrainJobIn, _: Authorized, settings: SettingsDep, jobs: JobsDep) -> Job:
    config_path = train_config_path(body.config)
    dataset = check_session_name(body.dataset)
    data_dir = checked(settings.root_dir, settings.datasets_dir / dataset, "dataset")
    if not (data_dir / MANIFEST).is_file():
        raise ApiError(
            404,
            "no-such-dataset",
            f"no converted dataset {dataset!r} (no {MANIFEST})",
            "convert a session first: POST /api/v1/jobs/replay, and wait for it to succeed",
        )
    items = check_train(config_path, body.overrides, body.max_steps, body.nproc, settings.nproc_limit)
    jobs.check_capacity()
    job_id = new_job_id()
    output = settings.runs_dir / job_id
    args = ["train", "--config", str(config_path), "--data", str(data_dir), "--out", str(output)]
    if body.max_steps is not None:
        args += ["--max-steps", str(body.max_steps)]
    params = {
        "config": body.config, "dataset": dataset, "overrides": dict(body.overrides),
        "max_steps": body.max_steps, "nproc": body.nproc,
    }  # fmt: skip
    job = await jobs.start(job_id, "train", [*args, *items], params, output, nproc=body.nproc)
    return Job(**job_body(job))


@router.get("", summary="Jobs, newest first")
async def list_jobs(
    _: Authorized, jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JobList:
    return JobList(jobs=[Job(**job_body(j)) for j in jobs.store.list(limit)])


@router.get("/configs", summary="Training config names (vrcap/configs/train/*.yaml)")
async def list_configs(_: Authorized) -> TrainConfigs:
    return TrainConfigs(configs=train_config_names())


@router.get("/{job_id}", summary="A job's state and its latest metrics")
async def get_job(job_id: str, _: Authorized, jobs: JobsDep) -> JobDetail:
    job = jobs.get(job_id)
    points = await asyncio.to_thread(jobs.metrics, job, 1)
    return JobDetail(**job_body(job), metrics=points[-1] if points else None)


@router.get("/{job_id}/metrics", summary="A training job's metrics.jsonl, for a loss curve")
async def get_metrics(
    job_id: str, _: Authorized, jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=2000)] = 500
) -> MetricsSeries:
    points = await asyncio.to_thread(jobs.metrics, jobs.get(job_id), limit)  # only what was appended is read
    return MetricsSeries(id=job_id, points=points)


@router.get("/{job_id}/log", summary="The last lines of a job's output")
async def get_log(
    job_id: str, _: Authorized, jobs: JobsDep, tail: Annotated[int, Query(ge=1, le=10000)] = 100
) -> JobLog:
    lines = await asyncio.to_thread(jobs.log_tail, jobs.get(job_id), tail)  # at most 1 MiB from the end
    return JobLog(id=job_id, lines=lines)


@router.post("/{job_id}/cancel", summary="Cancel a running job (SIGTERM, then SIGKILL)")
async def cancel_job(job_id: str, _: Authorized, jobs: JobsDep) -> Job:
    return Job(**job_body(await jobs.cancel(job_id)))


@datasets_router.get("", summary="Converted datasets (<root>/datasets/*/manifest.json)")
async def list_datasets(_: Authorized, settings: SettingsDep) -> DatasetList:
    root = settings.datasets_dir
    names = sorted(
        p.name for p in root.iterdir() if not p.is_symlink() and (p / MANIFEST).is_file() and not (p / MANIFEST).is_symlink()
    ) if root.is_dir() and not root.is_symlink() else []  # fmt: skip
    return DatasetList(datasets=names)
