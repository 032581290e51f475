"""The MCAP exporter's hand-packed protobuf bytes against google.protobuf and foxglove-sdk's own encoder.

Each case packs a message with replay/export/mcap_wire.py (or mcap_poses.py), then checks that the bytes
are exactly google.protobuf's serialization of the same message (classes built from the schema the SDK
ships, not from a copy of it) and that they decode to the message the SDK's objects encode. Edge cases: every
nanos varint length, nanos 0, seconds 0 and seconds past the SDK's u32, +0.0 / -0.0 / NaN / infinity in a
pose, an empty payload, a frame id over 127 bytes (2-byte length varints).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest

from replay.export.mcap_poses import PosesInFramePacker
from replay.export.mcap_wire import BytesMessagePacker, FrameTransformsPacker, timestamp_field, varint
from tests.interop.require import require
from vrcap.streams import StreamDescriptor

fm = require("foxglove.messages")
descriptor_pb2 = require("google.protobuf.descriptor_pb2")
descriptor_pool = require("google.protobuf.descriptor_pool")
json_format = require("google.protobuf.json_format")
message_factory = require("google.protobuf.message_factory")

NS = 1_000_000_000
WALL = 1_796_237_487_303_312_461  # seconds: a 5-byte varint; nanos: 5 bytes
LONG_NAME = "camera_" + "é" * 70  # 147 bytes of UTF-8 in 77 characters
NAN = float("nan")
# nanos of every varint length and at each length's bounds
NANOS = (0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, NS - 1)


def protobuf_class(sdk_message: Any) -> Any:
    """google.protobuf's class for a Foxglove message, from the FileDescriptorSet the SDK writes into MCAP."""
    schema = sdk_message.get_schema()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(schema.data).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))


FRAME_TRANSFORMS = protobuf_class(fm.FrameTransforms)
COMPRESSED_IMAGE = protobuf_class(fm.CompressedImage)
RAW_AUDIO = protobuf_class(fm.RawAudio)
POSES_IN_FRAME = protobuf_class(fm.PosesInFrame)


def as_dict(message: Any) -> dict[str, Any]:
    """A decoded message as plain values, defaults included: NaN becomes "NaN", so two decodings compare."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def sdk_stamp(wall_ns: int) -> Any:
    return fm.Timestamp(*divmod(wall_ns, NS))


def _transform(cls: Any, wall_ns: int, child: str, values: tuple[float, ...]) -> Any:
    message = cls()
    tf = message.transforms.add()
    tf.timestamp.seconds, tf.timestamp.nanos = divmod(wall_ns, NS)
    tf.parent_frame_id, tf.child_frame_id = "stage", child
    tf.translation.x, tf.translation.y, tf.translation.z = values[:3]
    tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w = values[3:7]
    return message


def _sdk_transform(wall_ns: int, child: str, v: tuple[float, ...]) -> bytes:
    tf = fm.FrameTransform(
        timestamp=sdk_stamp(wall_ns), parent_frame_id="stage", child_frame_id=child,
        translation=fm.Vector3(x=v[0], y=v[1], z=v[2]), rotation=fm.Quaternion(x=v[3], y=v[4], z=v[5], w=v[6]),
    )  # fmt: skip
    return fm.FrameTransforms(transforms=[tf]).encode()


POSE = (0.25, 1.625, -0.5, 0.01, 0.7, 0.02, 0.71)
POSES = {
    "ordinary": POSE,
    "plus zeros": (0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 1.0),  # identity rotation: protobuf leaves 4 fields out
    "all zeros": (0.0,) * 7,  # empty Vector3 and Quaternion, still written (set sub-messages)
    "negative zero": (-0.0, 1.5, 0.0, -0.0, 0.0, 0.0, 1.0),
    "nan": (NAN, 1.5, NAN, 0.5, NAN, 0.5, 1.0),  # the fixed layout: NaN is not 0
    "nan and zeros": (NAN, 1.5, NAN, 0.0, NAN, 0.0, 1.0),
    "negative zero alone": (1.0, 1.5, 2.0, 0.5, 0.5, -0.0, 0.5),
    "infinity": (math.inf, -math.inf, 1.0, 0.5, 0.5, 0.5, 0.5),
    "float32 extremes": (3.4028234663852886e38, -1.401298464324817e-45, 1.1754943508222875e-38, 0.5, 0.5, 0.5, 0.5),
}  # fmt: skip


@pytest.mark.parametrize("nanos", NANOS)
@pytest.mark.parametrize("child", ["head", LONG_NAME])
def test_frame_transforms_are_protobufs_bytes_and_decode_as_the_sdks(nanos: int, child: str) -> None:
    wall = (WALL // NS) * NS + nanos
    ours = FrameTransformsPacker("stage", child).pack(wall, POSE)
    assert ours == _transform(FRAME_TRANSFORMS, wall, child, POSE).SerializeToString()
    assert ours == _sdk_transform(wall, child, POSE)  # no zero in POSE: the SDK writes the same bytes
    tf = FRAME_TRANSFORMS.FromString(ours).transforms[0]
    assert tf.timestamp.seconds * NS + tf.timestamp.nanos == wall and tf.child_frame_id == child


@pytest.mark.parametrize("case", sorted(POSES))
def test_zero_nan_and_infinite_pose_values(case: str) -> None:
    values = POSES[case]
    ours = FrameTransformsPacker("stage", "head").pack(WALL, (*values, 9.0, 9.0))  # velocities ignored
    assert ours == _transform(FRAME_TRANSFORMS, WALL, "head", values).SerializeToString()
    decoded, sdk = (
        FRAME_TRANSFORMS.FromString(ours),
        FRAME_TRANSFORMS.FromString(_sdk_transform(WALL, "head", values)),
    )
    assert as_dict(decoded) == as_dict(sdk)  # -0.0 == 0.0 here: the SDK drops -0.0's sign, protobuf keeps it
    t, r = decoded.transforms[0].translation, decoded.transforms[0].rotation
    got = (t.x, t.y, t.z, r.x, r.y, r.z, r.w)
    assert struct.pack("<7d", *got) == struct.pack("<7d", *values)  # bit for bit: NaN, the sign of -0.0


@pytest.mark.parametrize(
    ("wall", "sdk_can"),
    [(0, True), (5, True), (NS, True), (127 * NS, True), ((2**32 - 1) * NS + 1, True),
     (2**33 * NS + 7, False), (2**35 * NS, False), (-1, False), (-(2**40) * NS - 3, False)],
)  # fmt: skip
def test_timestamp_seconds_of_every_length(wall: int, sdk_can: bool) -> None:
    """Seconds 0 and nanos 0 are left out; seconds past u32 (the SDK's Timestamp refuses them) are int64."""
    ours = FrameTransformsPacker("stage", "head").pack(wall, POSE)
    reference = _transform(FRAME_TRANSFORMS, wall, "head", POSE)
    assert ours == reference.SerializeToString()
    stamp = FRAME_TRANSFORMS.FromString(ours).transforms[0].timestamp
    assert stamp.seconds * NS + stamp.nanos == wall
    if sdk_can:
        assert ours == _sdk_transform(wall, "head", POSE)
    message = COMPRESSED_IMAGE()
    message.timestamp.seconds, message.timestamp.nanos = divmod(wall, NS)
    assert timestamp_field(wall) == message.SerializeToString()


def test_varint_is_protobufs_for_unsigned_and_negative_int64() -> None:
    for value in (0, 1, 127, 128, 300, 2**32 - 1, 2**35, 2**63 - 1, -1, -(2**63)):
        message = COMPRESSED_IMAGE()
        message.timestamp.seconds = value
        assert message.timestamp.SerializeToString() == (b"\x08" + varint(value) if value else b"")
    assert len(varint(-1)) == 10


IMAGES = {
    "jpeg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3 + b"\xff\xd9",
    "empty": b"",  # bytes "" is protobuf's default: the data field is not written at all
    "one byte": b"\x00",
    "127 bytes": b"\x01" * 127,
    "128 bytes": b"\x02" * 128,  # 2-byte length varint
    "70 kB": np.random.default_rng(7).integers(0, 256, 70_000, np.uint8).tobytes(),  # 3-byte length varint
}


@pytest.mark.parametrize("case", sorted(IMAGES))
@pytest.mark.parametrize("frame_id", ["camera_left", LONG_NAME])
def test_compressed_image_holds_the_bytes_as_recorded(case: str, frame_id: str) -> None:
    data = IMAGES[case]
    packer = BytesMessagePacker.compressed_image(frame_id, "jpeg")
    packer.pack(WALL - 1, IMAGES["jpeg"])  # a previous image of another length: the data header is redone
    ours = packer.pack(WALL, data)
    reference = COMPRESSED_IMAGE(data=data, format="jpeg", frame_id=frame_id)
    reference.timestamp.seconds, reference.timestamp.nanos = divmod(WALL, NS)
    assert ours == reference.SerializeToString()
    sdk = fm.CompressedImage(timestamp=sdk_stamp(WALL), frame_id=frame_id, data=data, format="jpeg").encode()
    assert ours == sdk
    assert COMPRESSED_IMAGE.FromString(ours).data == data


@pytest.mark.parametrize("case", ["960 bytes", "empty", "128 bytes"])
@pytest.mark.parametrize(("rate", "channels"), [(48_000, 1), (44_100, 2), (0, 0)])
def test_raw_audio_holds_the_pcm_as_recorded(case: str, rate: int, channels: int) -> None:
    data = {"960 bytes": bytes(range(240)) * 4, "empty": b"", "128 bytes": b"\x7f" * 128}[case]
    packer = BytesMessagePacker.raw_audio("pcm-s16", rate, channels)
    for wall in (WALL, WALL + 10_000_000):  # the same block length twice: the cached header
        ours = packer.pack(wall, data)
        reference = RAW_AUDIO(data=data, format="pcm-s16", sample_rate=rate, number_of_channels=channels)
        reference.timestamp.seconds, reference.timestamp.nanos = divmod(wall, NS)
        assert ours == reference.SerializeToString()
        sdk = fm.RawAudio(timestamp=sdk_stamp(wall), data=data, format="pcm-s16", sample_rate=rate,
                          number_of_channels=channels).encode()  # fmt: skip
        assert ours == sdk


HAND = StreamDescriptor("hand_left", "hand", 90.0, (26, 8), "float32", "raw")


@pytest.mark.parametrize("wall", [WALL, (WALL // NS) * NS, 3])
def test_hand_poses_decode_as_the_sdks(wall: int) -> None:
    """Hands write every double, +0.0 too (mcap_poses.py says why): the same message, not the same bytes."""
    joints = np.random.default_rng(1).normal(size=(26, 8)).astype(np.float32)
    joints[0, :7] = [0.0, -0.0, NAN, 1.0, 0.0, 0.0, 0.0]
    packer = PosesInFramePacker("stage", HAND)
    packer.pack(wall + 1, np.zeros((26, 8), np.float32).tobytes())  # the packer reuses one buffer
    ours = POSES_IN_FRAME.FromString(packer.pack(wall, joints.tobytes()))
    values = joints.astype(float).tolist()
    sdk = fm.PosesInFrame(timestamp=sdk_stamp(wall), frame_id="stage", poses=[
        fm.Pose(position=fm.Vector3(x=j[0], y=j[1], z=j[2]), orientation=fm.Quaternion(x=j[3], y=j[4], z=j[5], w=j[6]))
        for j in values
    ]).encode()  # fmt: skip
    assert as_dict(ours) == as_dict(POSES_IN_FRAME.FromString(sdk))
    got = [[p.position.x, p.position.y, p.position.z, p.orientation.x, p.orientation.y, p.orientation.z,
            p.orientation.w] for p in ours.poses]  # fmt: skip
    assert np.array_equal(np.array(got).view(np.uint64), joints[:, :7].astype(float).view(np.uint64))
