"""MCAP export checked by the `mcap` Python reader with protobuf decoding: every message against the session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_vrcap
from tests.interop.conftest import session_samples, wall
from tests.interop.require import require

mcap_reader = require("mcap.reader")
DecoderFactory = require("mcap_protobuf.decoder").DecoderFactory


@pytest.fixture(scope="module")
def exported(interop_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mcap") / "cups.mcap"
    done = run_vrcap("export", str(interop_session), "--format", "mcap", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _messages(path: Path) -> dict[str, list[tuple[int, int, int, object]]]:
    """topic → [(log_time, publish_time, sequence, decoded)], in file order; JSON channels decoded by json."""
    factory = DecoderFactory()
    out: dict[str, list[tuple[int, int, int, object]]] = {}
    with open(path, "rb") as f:
        reader = mcap_reader.make_reader(f)
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            if channel.message_encoding == "json":
                decoded: object = json.loads(message.data)
            else:
                decoded = factory.decoder_for(channel.message_encoding, schema)(message.data)
            out.setdefault(channel.topic, []).append(
                (message.log_time, message.publish_time, message.sequence, decoded)
            )
    return out


def test_summary_is_lz4_chunked_with_every_channel_counted(exported: Path, interop_session: Path) -> None:
    truth = session_samples(interop_session)
    with open(exported, "rb") as f:
        summary = mcap_reader.make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None
    assert {c.compression for c in summary.chunk_indexes} == {"lz4"}
    counts = {
        c.topic: summary.statistics.channel_message_counts.get(i, 0) for i, c in summary.channels.items()
    }
    assert counts == {f"/{name}": len(samples) for name, samples in truth.items()}
    assert counts["/camera_left"] == 60 and counts["/eeg"] == 498 and counts["/annotations"] == 2
    schemas = {summary.schemas[c.schema_id].name for c in summary.channels.values()}
    assert {"foxglove.FrameTransforms", "foxglove.PosesInFrame", "foxglove.CompressedImage",
            "foxglove.RawAudio", "foxglove.Log", "vrcap.controls_left", "vrcap.eeg"} <= schemas  # fmt: skip


def test_every_message_equals_the_session(exported: Path, interop_session: Path) -> None:
    truth = session_samples(interop_session)
    got = _messages(exported)
    for name, samples in truth.items():
        messages = got[f"/{name}"]
        assert len(messages) == len(samples), name
        for k, (sample, (log_time, publish_time, seq, msg)) in enumerate(zip(samples, messages, strict=True)):
            assert log_time == publish_time == wall(sample["t"]) and seq == k + 1, name
            _check(name, sample, msg, log_time)


def _check(name: str, sample: dict, msg: object, log_time: int) -> None:
    if name in ("head", "controller_left", "controller_right"):
        (tf,) = msg.transforms  # type: ignore[attr-defined]
        p = np.frombuffer(sample["d"], np.float32)
        assert (tf.parent_frame_id, tf.child_frame_id) == ("stage", name)
        assert tf.timestamp.ToNanoseconds() == log_time
        got = [tf.translation.x, tf.translation.y, tf.translation.z,
               tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w]  # fmt: skip
        assert np.array_equal(np.array(got, np.float32), p[:7])
    elif name.startswith("hand_"):
        joints = np.frombuffer(sample["d"], np.float32).reshape(26, 8)
        got = [[j.position.x, j.position.y, j.position.z, j.orientation.x, j.orientation.y,
                j.orientation.z, j.orientation.w] for j in msg.poses]  # type: ignore[attr-defined]  # fmt: skip
        assert msg.frame_id == "stage" and np.array_equal(np.array(got, np.float32), joints[:, :7])  # type: ignore[attr-defined]
    elif name.startswith("camera_"):
        assert msg.data == sample["d"] and msg.format == "jpeg" and msg.frame_id == name  # type: ignore[attr-defined]
        assert msg.timestamp.ToNanoseconds() == log_time  # type: ignore[attr-defined]
    elif name == "audio":
        assert msg.data == sample["d"] and msg.format == "pcm-s16"  # type: ignore[attr-defined]
        assert (msg.sample_rate, msg.number_of_channels) == (48000, 1)  # type: ignore[attr-defined]
    elif name == "annotations":
        assert msg.message == sample["d"]["text"] and msg.name == "instruction/external"  # type: ignore[attr-defined]
    elif name.startswith("controls_"):
        values = np.frombuffer(sample["d"], np.float32)
        fields = ["trigger", "squeeze", "thumbstick_x", "thumbstick_y", "button_a", "button_b", "menu",
                  "thumbstick_click"]  # fmt: skip
        assert np.array_equal(np.array([msg[f] for f in fields], np.float32), values)  # type: ignore[index]
    elif name == "eeg":
        values = np.frombuffer(sample["d"], np.float32)
        assert [msg[c] for c in ("Fz", "Cz", "Pz", "Oz")] == values.tolist()  # type: ignore[index]
        assert msg["timestamp_ns"] == log_time  # type: ignore[index]
    else:
        raise AssertionError(f"stream {name} has no check")


def test_export_is_deterministic(exported: Path, interop_session: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.mcap"
    done = run_vrcap("export", str(interop_session), "--format", "mcap", "--out", str(again))
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == exported.read_bytes()
