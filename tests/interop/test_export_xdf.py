"""XDF export checked by pyxdf (what LabRecorder users load), with and without clock synchronization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_vrcap
from tests.interop.conftest import session_samples
from tests.interop.require import require

pyxdf = require("pyxdf")


@pytest.fixture(scope="module")
def exported(interop_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xdf") / "cups.xdf"
    done = run_vrcap("export", str(interop_session), "--format", "xdf", "--out", str(out), "--set",
                     "xdf.chunk_seconds=0.5", "--set", "xdf.clock_offset_interval_s=0.7")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _expected(name: str, samples: list[dict]) -> tuple[np.ndarray, np.ndarray | list]:
    """(timestamps in s, values) of a stream as XDF should hold them, computed from the session alone."""
    if name == "audio":
        times = np.concatenate([s["t"] + np.round(np.arange(s["n"]) * 1e9 / 48000) for s in samples])
        return times / 1e9, np.concatenate([np.frombuffer(s["d"], np.int16) for s in samples])[:, None]
    times = np.array([s["t"] for s in samples], np.float64) / 1e9
    if name == "annotations":
        return times, [[s["d"]["text"], s["d"]["kind"], s["d"]["channel"]] for s in samples]
    if name.startswith("camera_"):
        return times, np.array([[s["f"]] for s in samples], np.int64)
    return times, np.stack([np.frombuffer(s["d"], np.float32).reshape(-1) for s in samples])


@pytest.mark.parametrize("synchronize", [False, True])
def test_pyxdf_reads_every_sample_at_its_time(
    exported: Path, interop_session: Path, synchronize: bool
) -> None:
    truth = session_samples(interop_session)
    streams, header = pyxdf.load_xdf(str(exported), synchronize_clocks=synchronize, dejitter_timestamps=False)
    assert header["info"]["version"] == ["1.0"]
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert sorted(by_name) == sorted(truth)
    for name, samples in truth.items():
        stream = by_name[name]
        times, values = _expected(name, samples)
        assert stream["time_stamps"].shape == times.shape, name
        assert np.max(np.abs(stream["time_stamps"] - times)) < 1e-6, name
        if name == "annotations":
            assert stream["time_series"] == values
        else:
            assert np.array_equal(np.asarray(stream["time_series"]), values), name
        assert int(stream["footer"]["info"]["sample_count"][0]) == len(times)
    assert by_name["audio"]["time_stamps"].size == 198 * 480  # the 10 ms blocks complete by the last frame


def test_headers_carry_rates_formats_and_channel_labels(exported: Path) -> None:
    streams, _ = pyxdf.load_xdf(str(exported), dejitter_timestamps=False)
    info = {s["info"]["name"][0]: s["info"] for s in streams}
    assert [info["head"][k][0] for k in ("type", "nominal_srate", "channel_format", "channel_count")] == [
        "MoCap", "90", "float32", "13"]  # fmt: skip
    assert float(info["audio"]["nominal_srate"][0]) == 48000 and info["audio"]["channel_format"][0] == "int16"
    assert float(info["annotations"]["nominal_srate"][0]) == 0 and info["annotations"]["type"][0] == "Markers"
    channels = info["head"]["desc"][0]["channels"][0]["channel"]
    assert [c["label"][0] for c in channels[:4]] == ["px", "py", "pz", "qx"]
    assert [c["unit"][0] for c in channels[:4]] == ["meters", "meters", "meters", "normalized"]
    eeg = [c["label"][0] for c in info["eeg"]["desc"][0]["channels"][0]["channel"]]
    assert (
        eeg == ["Fz", "Cz", "Pz", "Oz"] and len(info["hand_left"]["desc"][0]["channels"][0]["channel"]) == 208
    )


def test_clock_offsets_are_written_for_every_stream(exported: Path) -> None:
    streams, _ = pyxdf.load_xdf(str(exported), synchronize_clocks=False, dejitter_timestamps=False)
    for stream in streams:
        times = np.asarray(stream["clock_times"])
        assert times.size >= 3 and np.all(np.diff(times) > 0), stream["info"]["name"]  # 0.7 s apart over 2 s
        assert np.all(np.asarray(stream["clock_values"]) == 0.0)


def test_export_is_deterministic(exported: Path, interop_session: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.xdf"
    done = run_vrcap("export", str(interop_session), "--format", "xdf", "--out", str(again), "--set",
                     "xdf.chunk_seconds=0.5", "--set", "xdf.clock_offset_interval_s=0.7")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == exported.read_bytes()
