"""``foxglove.PosesInFrame`` for a hand's 26 joints, packed with numpy instead of message by message.

Why: building the message through an object API (Python protobuf or foxglove-sdk's classes) costs 20-160 µs
(26 sub-messages of 7 fields each); two hands at 90 Hz made it 60% of the whole MCAP export. The wire format
of this message is fixed-size once every field is written, so the bytes are a template whose 7 doubles per
joint are filled through two strided numpy views in a few µs. The output is valid protobuf that decodes to
the same message (the tests decode it with Python's protobuf and with protobufjs); it differs from
protobuf's own bytes only in writing 0.0 fields explicitly, which proto3 readers accept.

    PosesInFrame: 1 timestamp (Timestamp: 1 seconds varint, 2 nanos varint), 2 frame_id (string), 3 poses (Pose)
    Pose: 1 position (Vector3: 1 x, 2 y, 3 z doubles), 2 orientation (Quaternion: 1 x, 2 y, 3 z, 4 w doubles)
"""

from __future__ import annotations

import math

import numpy as np

from replay.export.mcap_wire import field, timestamp_field
from vrcap.streams import StreamDescriptor

# One Pose field as written: tag 0x1A, length, then position (tag 0x0A, length 27, three tagged doubles) and
# orientation (tag 0x12, length 36, four tagged doubles). A tagged double is its tag byte and 8 bytes.
_POSITION = bytes([0x0A, 27])
_ORIENTATION = bytes([0x12, 36])
POSE_BYTES = 2 + len(_POSITION) + 3 * 9 + len(_ORIENTATION) + 4 * 9
_POSITION_AT = 2 + len(_POSITION) + 1  # first position double, after its tag
_ORIENTATION_AT = 2 + len(_POSITION) + 3 * 9 + len(_ORIENTATION) + 1


def _pose_template() -> bytes:
    doubles = lambda count: b"".join(bytes([(i + 1) << 3 | 1]) + bytes(8) for i in range(count))  # noqa: E731
    body = _POSITION + doubles(3) + _ORIENTATION + doubles(4)
    return bytes([0x1A, len(body)]) + body


class PosesInFramePacker:
    """Serialized PosesInFrame messages for one hand stream: (joints, >=7) float values, position + xyzw.

    The packer owns one message buffer that every ``pack`` refills through two views made once: it is used
    by one exporter, one sample at a time, and each result is a copy (``tobytes``).
    """

    def __init__(self, frame_id: str, desc: StreamDescriptor) -> None:
        self.joints = int(desc.shape[0])
        self.per_joint = int(math.prod(desc.shape[1:]))
        self.dtype = np.dtype(desc.dtype).newbyteorder("<")
        self.frame = field(2, frame_id.encode())
        self.buffer = np.frombuffer(_pose_template() * self.joints, np.uint8).copy()
        n = self.joints
        self.position = np.ndarray((n, 3), "<f8", self.buffer, _POSITION_AT, (POSE_BYTES, 9))
        self.orientation = np.ndarray((n, 4), "<f8", self.buffer, _ORIENTATION_AT, (POSE_BYTES, 9))

    def pack(self, wall_ns: int, data: bytes) -> bytes:
        joints = np.frombuffer(data, self.dtype).reshape(self.joints, self.per_joint)
        self.position[...] = joints[:, :3]
        self.orientation[...] = joints[:, 3:7]
        return timestamp_field(wall_ns) + self.frame + self.buffer.tobytes()
