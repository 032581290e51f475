"""Samples onto LeRobot's step clock: the state vector, one image per camera and the task of every step.

Step ``k`` of a session is at ``first frame time + round(k·1e9/fps)``. Each step takes, per stream, the
latest sample at or before its time (held, never interpolated or invented; before a stream's first sample,
zeros) — the rule docs/INTEROP.md states and the tests recompute. Samples can be up to 0.1 s later than their
packet (docs/FORMAT.md §4), so a step is emitted only once the packets read are 0.1 s past it; memory stays
constant (a few samples per stream).

State layout: every pose/gaze stream (13 values: position, quaternion xyzw, linear and angular velocity),
then every hand (26 joints × 8: position, quaternion, radius), then every controls stream (8), in the
session's stream order; NaN (an OpenXR part that was not valid) becomes 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from replay.export.source import StreamSample
from vrcap.streams import StreamDescriptor

STATE_KINDS = ("pose", "gaze", "hand", "controls")
MAX_LATENESS_NS = 100_000_000


def state_streams(streams: list[StreamDescriptor]) -> list[StreamDescriptor]:
    order = {"pose": 0, "gaze": 0, "hand": 1, "controls": 2}
    chosen = [s for s in streams if s.kind in STATE_KINDS and s.encoding == "raw"]
    return sorted(chosen, key=lambda s: order[s.kind])  # stable: the session's order inside each group


def state_names(streams: list[StreamDescriptor]) -> list[str]:
    names = []
    for s in streams:
        fields = list(s.fields) or [f"v{i}" for i in range(s.shape[-1])]
        if s.kind == "hand":
            names += [f"{s.name}.joint{j:02d}.{f}" for j in range(s.shape[0]) for f in fields]
        else:
            names += [f"{s.name}.{f}" for f in fields]
    return names


def camera_streams(streams: list[StreamDescriptor]) -> list[StreamDescriptor]:
    return [s for s in streams if s.kind == "video" and s.encoding in ("jpeg", "png")]


def is_instruction(sample: StreamSample) -> bool:
    data = sample.data
    return sample.stream.kind == "text" and isinstance(data, dict) and data.get("kind") == "instruction"


@dataclass
class Step:
    k: int
    t: int
    state: np.ndarray  # (N,) float32
    images: list[bytes | None]  # per camera: a newly current encoded frame, or None (the last one holds)
    instruction: str | None  # the latest instruction at or before the step, if any
    new_instruction: bool  # an instruction arrived since the previous step (a task segment starts)


class StepSampler:
    """Feed samples in file order with ``add``; ``ready(packet_t)`` and ``finish()`` yield the steps."""

    def __init__(self, streams: list[StreamDescriptor], cameras: list[StreamDescriptor], t_first: int,
                 fps: float) -> None:  # fmt: skip
        self.period = 1e9 / fps
        self.t_first = t_first
        self._slots: dict[str, tuple[int, int]] = {}
        offset = 0
        for s in streams:
            width = int(np.prod(s.shape))
            self._slots[s.name] = (offset, width)
            offset += width
        self.state = np.zeros(offset, np.float32)
        self._pending: dict[str, deque[tuple[int, object]]] = {s.name: deque() for s in (*streams, *cameras)}
        self._cameras = [c.name for c in cameras]
        self._cameras_set = set(self._cameras)
        self._encoded: dict[str, object] = {}
        self._instructions: deque[tuple[int, str]] = deque()
        self._instruction: str | None = None
        self._k = 0

    def add(self, sample: StreamSample) -> None:
        name = sample.stream.name
        if is_instruction(sample):
            self._instructions.append((sample.t, str(sample.data.get("text", ""))))
        elif name in self._pending:
            self._pending[name].append((sample.t, sample.data))

    def _time(self, k: int) -> int:
        return self.t_first + round(k * self.period)

    def ready(self, packet_t: int) -> Iterator[Step]:
        while self._time(self._k) <= packet_t - MAX_LATENESS_NS:
            yield self._step()

    def finish(self, t_last: int) -> Iterator[Step]:
        while self._time(self._k) <= t_last:
            yield self._step()

    def _step(self) -> Step:
        t = self._time(self._k)
        for name, queue in self._pending.items():
            latest = None
            while queue and queue[0][0] <= t:
                latest = queue.popleft()[1]
            if latest is None:
                continue
            if name in self._cameras_set:
                self._encoded[name] = latest
            else:
                offset, width = self._slots[name]
                values = np.frombuffer(latest, "<f4")  # type: ignore[arg-type]
                self.state[offset : offset + width] = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        new = False
        while self._instructions and self._instructions[0][0] <= t:
            self._instruction = self._instructions.popleft()[1]
            new = True
        images: list[bytes | None] = [self._encoded.pop(c, None) for c in self._cameras]  # type: ignore[misc]
        step = Step(self._k, t, self.state.copy(), images, self._instruction, new)
        self._k += 1
        return step
