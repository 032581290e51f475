"""The API's override bounds are the config schemas' own, narrowed only where a network client must get less."""

from __future__ import annotations

import pytest

from capture.config import CaptureConfig
from server.bounds import (
    API_LIMITS_CAPTURE,
    API_LIMITS_TRAIN,
    CAPTURE_BOUNDS,
    TRAIN_BOUNDS,
    Bound,
    check_overrides,
    schema_bounds,
)
from server.errors import ApiError
from training.config import TrainConfig


@pytest.mark.parametrize(
    ("schema", "limits", "bounds"),
    [(CaptureConfig, API_LIMITS_CAPTURE, CAPTURE_BOUNDS), (TrainConfig, API_LIMITS_TRAIN, TRAIN_BOUNDS)],
)
def test_every_schema_bound_is_the_apis_and_a_limit_only_narrows(
    schema: type, limits: dict[str, tuple[float, float, str]], bounds: dict[str, Bound]
) -> None:
    from_schema = schema_bounds(schema)
    assert len(from_schema) >= 12  # the walk found the sections' fields
    for key, bound in from_schema.items():
        if key not in limits:
            assert bounds[key] == bound, key  # read from the schema, not copied
    for key, (low, high, why) in limits.items():
        assert why, key
        if key in from_schema:  # a limit that does not narrow the schema would be a copy of it
            s = from_schema[key]
            assert (low, high) != (s.low, s.high) and low >= s.low and high <= s.high, key
            assert s.low <= bounds[key].low and bounds[key].high <= s.high
        else:
            assert key.startswith("sim."), key  # only the section without schema bounds (capture/sim.py)


def test_a_value_outside_is_refused_with_the_range_and_open_ends_are_kept() -> None:
    assert TRAIN_BOUNDS["model.dropout"].words() == "[0, 1)"  # the schema's lt=1
    assert CAPTURE_BOUNDS["writer.flush_interval_s"].words() == "[0.01, 60]"  # schema (0, 3600], narrowed
    with pytest.raises(ApiError) as refused:
        check_overrides({"model.dropout": 1.0}, TRAIN_BOUNDS)
    assert refused.value.status == 422 and refused.value.code == "out-of-bounds"
    assert "model.dropout = 1 is outside [0, 1)" in refused.value.problem
    check_overrides({"model.dropout": 0.5, "optim.lr": 1e-3}, TRAIN_BOUNDS)  # inside: nothing raised
