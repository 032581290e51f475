"""The review overview's body (GET /api/v1/sessions/{name}/overview): one class per part, for the OpenAPI schema.

Lists of numbers are per time bucket; ``None`` where a value is not a number. Times are seconds from the
session's first frame (server/review_scan.py builds them; docs/API.md, "Reviewing a session", says how).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

Series = list[float | None]


class Drop(BaseModel):
    t: float = Field(description="time of the last frame before the jump in seq, s")
    frames: int = Field(description="frames dropped there")


class Gap(BaseModel):
    t: float = Field(description="time of the frame before the pause, s")
    length_s: float = Field(description="the frame interval, s")


class Note(BaseModel):
    t: float
    stream: str = Field(description="the text stream, or 'imported' for `vrcap annotate --import` sidecars")
    text: str
    kind: str
    channel: str


class Track(BaseModel):
    name: str = Field(description="head, controller_left/right, hand_left/right (the wrist joint)")
    kind: str
    t: list[float] = Field(description="bucket centres, s")
    x: Series
    y: Series
    z: Series
    speed: Series = Field(description="mean speed in the bucket, m/s")
    max_speed: float | None = Field(description="the fastest sample-to-sample speed, m/s")


class Sound(BaseModel):
    stream: str
    rate_hz: float
    t: list[float]
    min: Series = Field(description="lowest sample in the bucket, full scale -1..1")
    max: Series = Field(description="highest sample in the bucket, full scale -1..1")
    rms_dbfs: Series = Field(description="RMS level, dBFS, clipped at -120 (digital silence)")
    peak: float = Field(description="the largest absolute sample, full scale")
    rms_dbfs_overall: float


class CameraInfo(BaseModel):
    name: str
    frames: int
    width: int
    height: int


class Overview(BaseModel):
    name: str
    duration_s: float
    frames: int
    points: int = Field(description="time buckets per curve asked for")
    drops: list[Drop]
    gaps: list[Gap]
    annotations: list[Note] = Field(description="at most 500, by time")
    annotations_total: int
    tracks: list[Track]
    audio: Sound | None
    cameras: list[CameraInfo]
