"""Issue 13 §3: what capture and the server both need is defined once (no second copy to drift apart)."""

from __future__ import annotations

import dataclasses

from capture.engine import LiveStats
from server.models import AnnotationIn, LiveStatsBody
from vrcap.packets import ANNOTATION_CHANNELS, ANNOTATION_KINDS


def test_live_stats_body_is_made_from_the_capture_dataclass() -> None:
    names = [f.name for f in dataclasses.fields(LiveStats)]
    assert list(LiveStatsBody.model_fields) == [*names, "total_drops"]
    stats = LiveStats(session="s", frames=3, drops={"audio": 2}, clocks={"audio": {"drift_ppm": 1.5}})
    body = LiveStatsBody(**{**dataclasses.asdict(stats), "total_drops": stats.total_drops})
    assert body.total_drops == 2 and body.clocks == {"audio": {"drift_ppm": 1.5}}  # type: ignore[attr-defined]


def test_annotation_kinds_are_the_formats() -> None:
    schema = AnnotationIn.model_json_schema()["properties"]
    assert tuple(schema["kind"]["enum"]) == ANNOTATION_KINDS == ("instruction", "transcript", "marker")
    assert tuple(schema["channel"]["enum"]) == ANNOTATION_CHANNELS
