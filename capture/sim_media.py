"""Synthetic media of the simulated rig: microphone audio with known events, camera frames that carry their number.

Audio: silence (exact zeros) broken by tone bursts and chirps at fixed, seed-independent times, so a test can find
each onset in the recording and measure clock drift and latency against ``AudioSynth.events``. Event times are
snapped to the sample grid and every sample is computed from its absolute index alone, which makes any split
into blocks bit-identical to one long block.

Camera: each frame carries its number as a barcode (machine-readable, survives JPEG and downscaling) and as text
(human-readable), over a background that pans with the head and a few objects projected from the stage frame.
Barcode layout, in units ``u = image width / 40`` so it scales with the image::

    black frame  x 0..37u, y 0..3u        cells, 1u square, at x = (1 + j)u, y = 1u, j = 0..34:
    white quiet zone  x 0.5..36.5u,        j = 0 black reference, j = 1 white reference,
                      y 0.5..2.5u          j = 2..33 frame number MSB first (black = 1), j = 34 even parity
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from capture.sim_motion import HEAD_MAX_PITCH_RAD, HEAD_MAX_YAW_RAD, RigMotion
from capture.sim_speech import SPEECH_AMPLITUDE, SpeechTrack, Voice
from capture.sim_tasks import EPISODE_S, TaskSchedule
from vrcap.quaternion import quat_conj, quat_rotate

# --- audio ---------------------------------------------------------------------------------------------------
AUDIO_AMPLITUDE = 0.5  # fraction of int16 full scale
AUDIO_CHANNEL_GAIN = 0.8  # channel c is scaled by 0.8**c, so a swapped channel pair is detectable
FADE_MS = 2  # raised-cosine fade at both ends of each event
TONE_FIRST_MS, TONE_PERIOD_MS, TONE_DURATION_MS = 500, 1000, 100
TONE_FREQS_HZ = (1000.0, 1500.0, 2000.0)  # tone k uses TONE_FREQS_HZ[k % 3]
# 250 ms rather than 300: a 300 ms chirp from 3.2 s would end exactly where the 3.5 s tone starts.
CHIRP_FIRST_MS, CHIRP_PERIOD_MS, CHIRP_DURATION_MS = 3200, 5000, 250
CHIRP_START_HZ, CHIRP_END_HZ = 200.0, 4000.0
_FULL_SCALE = 32767.0
_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class AudioEvent:
    """Ground truth of one burst; ``start_s`` is the time of its first (non-zero) sample."""

    kind: str  # "tone", "chirp" or "word"
    start_s: float
    duration_s: float
    freq_hz: float  # start frequency (a word's pitch)
    end_freq_hz: float  # == freq_hz for tones
    amplitude: float  # fraction of full scale (a word's peak is at most this)
    text: str = ""  # the word said


@dataclass(frozen=True)
class _Burst:
    start: int  # first sample index
    length: int  # samples
    freq_hz: float
    end_freq_hz: float


class AudioSynth:
    """The virtual microphone: ``block(i, n)`` is samples i..i+n-1, int16, (n, channels).

    Seed-independent calibration tones and chirps, and, with a ``TaskSchedule``, the seeded voice saying each
    task's transcript in between (capture/sim_speech.py).
    """

    def __init__(self, rate_hz: int, channels: int, speech_seed: int | None = None) -> None:
        self._rate = rate_hz
        voice = Voice.from_seed(speech_seed) if speech_seed is not None else None
        # The narrator a TaskSchedule is built with; its words are heard once ``tasks`` is set.
        self.speech = SpeechTrack(rate_hz, voice, self._burst_spans) if voice is not None else None
        self.tasks: TaskSchedule | None = None
        self._gains = (
            AUDIO_CHANNEL_GAIN ** np.arange(channels, dtype=np.float64) * AUDIO_AMPLITUDE * _FULL_SCALE
        )
        fade = self._ms_to_samples(FADE_MS)
        # Starts one step in, so the event's first sample is already non-zero and its onset is exact.
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, fade + 1) / (fade + 1))
        self._fade = np.append(ramp, 1.0)  # index min(k, fade) -> envelope value

    def _ms_to_samples(self, ms: int) -> int:
        return (ms * self._rate + 500) // 1000  # round half up, in integers: no float drift over hours

    def _schedule(self) -> Iterator[tuple[int, int, int, Sequence[tuple[float, float]]]]:
        yield TONE_FIRST_MS, TONE_PERIOD_MS, TONE_DURATION_MS, [(f, f) for f in TONE_FREQS_HZ]
        yield CHIRP_FIRST_MS, CHIRP_PERIOD_MS, CHIRP_DURATION_MS, [(CHIRP_START_HZ, CHIRP_END_HZ)]

    def _bursts(self, first: int, end: int) -> Iterator[_Burst]:
        """Bursts that overlap samples [first, end), in schedule order."""
        first_ms = first * 1000 // self._rate
        for start_ms, period_ms, duration_ms, freqs in self._schedule():
            length = self._ms_to_samples(duration_ms)
            k = max(0, (first_ms - start_ms - duration_ms) // period_ms)
            while (start := self._ms_to_samples(start_ms + k * period_ms)) < end:
                if start + length > first:
                    yield _Burst(start, length, *freqs[k % len(freqs)])
                k += 1

    def prepare(self, words: list[Any]) -> None:
        """Render the sound of ``words`` now (see SimRig.prepare)."""
        if self.speech is not None:
            for word in words:
                self.speech.samples(word.text)

    def _burst_spans(self, first: int, end: int) -> Iterator[tuple[int, int]]:
        return ((b.start, b.length) for b in self._bursts(max(first, 0), end))

    def events(self, t_end: float) -> list[AudioEvent]:
        """Every event that starts before ``t_end`` seconds, sorted by start."""
        end = max(0, math.ceil(t_end * self._rate))
        out = [
            AudioEvent(
                kind="tone" if burst.freq_hz == burst.end_freq_hz else "chirp",
                start_s=burst.start / self._rate,
                duration_s=burst.length / self._rate,
                freq_hz=burst.freq_hz,
                end_freq_hz=burst.end_freq_hz,
                amplitude=AUDIO_AMPLITUDE,
            )
            for burst in self._bursts(0, end)
        ]
        if self.speech is not None and self.tasks is not None:
            last = math.floor(max(t_end, 0.0) / EPISODE_S)
            out += [
                AudioEvent("word", w.start / self._rate, w.length / self._rate, w.f0_hz,
                           w.f0_hz * (1.0 + w.glide), SPEECH_AMPLITUDE, w.text)
                for e in range(last + 1) for w in self.tasks.episode(e).words
            ]  # fmt: skip
        return sorted((e for e in out if e.start_s < t_end), key=lambda e: e.start_s)

    def block(self, start_index: int, n: int) -> np.ndarray:
        """Samples ``start_index .. start_index + n - 1``; sample i is at t = i / rate."""
        if start_index < 0 or n < 0:
            raise ValueError(f"audio block needs start_index >= 0 and n >= 0, got {start_index}, {n}")
        out = np.zeros((n, len(self._gains)), dtype=np.int16)
        for burst in self._bursts(start_index, start_index + n):
            lo = max(burst.start, start_index)
            hi = min(burst.start + burst.length, start_index + n)
            offsets = np.arange(lo - burst.start, hi - burst.start)
            wave = self._burst_wave(burst, offsets)
            out[lo - start_index : hi - start_index] = np.rint(wave[:, None] * self._gains)
        if self.speech is not None and self.tasks is not None and n:
            voice = np.zeros(n)
            self.speech.add(voice, start_index, self.tasks)
            spoken = np.flatnonzero(voice)  # words never overlap the tones: add only where they are
            if spoken.size:
                out[spoken] = np.rint(voice[spoken, None] * self._gains)
        return out

    def _burst_wave(self, burst: _Burst, k: np.ndarray) -> np.ndarray:
        """Unit-amplitude samples of ``burst`` at offsets ``k``: a function of the offset alone."""
        tau = k / self._rate
        sweep = (burst.end_freq_hz - burst.freq_hz) * self._rate / burst.length  # Hz per second
        phase = _TWO_PI * tau * (burst.freq_hz + 0.5 * sweep * tau)
        fade_len = len(self._fade) - 1
        envelope = np.minimum(
            self._fade[np.minimum(k, fade_len)], self._fade[np.minimum(burst.length - 1 - k, fade_len)]
        )
        return envelope * np.cos(phase)  # cosine: the first sample is at a peak, so it is never rounded to 0


# --- barcode -------------------------------------------------------------------------------------------------
BARCODE_BITS = 32
MAX_FRAME_NUMBER = 2**BARCODE_BITS - 1
_UNITS_PER_WIDTH = 40.0
_N_CELLS = 2 + BARCODE_BITS + 1
MIN_CAMERA_WIDTH = 320  # 8 px cells: decodable after JPEG q50; downscaled images need cells of >= 6 px
_MIN_CONTRAST = 80.0  # grey levels between the reference cells; less means "no barcode here"


def barcode_unit(width: int) -> float:
    """Cell size in pixels for an image ``width`` pixels wide."""
    return width / _UNITS_PER_WIDTH


def min_camera_height(width: int) -> int:
    """Barcode (3 units) plus the text line under it (2 units)."""
    return math.ceil(5 * barcode_unit(width))


@functools.lru_cache(maxsize=8)
def _overlay_layout(width: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Row span and per-column cell index of the barcode for one width (cached: it never changes)."""
    u = barcode_unit(width)
    edges = np.rint((1.0 + np.arange(_N_CELLS + 1)) * u).astype(int)
    column_cell = np.repeat(np.arange(_N_CELLS), np.diff(edges))
    return round(u), round(2 * u), edges, column_cell


def _cell_bits(frame_number: int) -> np.ndarray:
    bits = [(frame_number >> (BARCODE_BITS - 1 - i)) & 1 for i in range(BARCODE_BITS)]
    return np.array([1, 0, *bits, sum(bits) & 1], dtype=bool)


def draw_frame_overlay(image: np.ndarray, camera: str, frame_number: int, t: float) -> None:
    """Draw the barcode and the text line ("left #000123 t=4.100s") onto ``image`` in place."""
    width = image.shape[1]
    u = barcode_unit(width)
    image[: round(3 * u), : round(37 * u)] = 0
    image[round(0.5 * u) : round(2.5 * u), round(0.5 * u) : round(36.5 * u)] = 255
    y0, y1, edges, column_cell = _overlay_layout(width)
    shades = np.where(_cell_bits(frame_number), 0, 255).astype(np.uint8)
    image[y0:y1, edges[0] : edges[-1]] = shades[column_cell][None, :, None]
    text = f"{camera} #{frame_number:06d} t={t:.3f}s"
    origin, scale, thick = (round(0.5 * u), round(4.5 * u)), u / 20.0, max(1, round(u / 10.0))
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def decode_frame_number(image: np.ndarray) -> int | None:
    """Read the frame number back from a frame (BGR or grey), also after JPEG and uniform downscaling.

    Returns None when the reference cells lack contrast, a cell is ambiguous or the parity is wrong.
    """
    if image.ndim not in (2, 3) or image.shape[1] < 40:
        return None
    u = barcode_unit(image.shape[1])
    if image.shape[0] < 3 * u:
        return None
    half = max(1, int(0.25 * u))  # sample the middle of each cell, away from JPEG ringing at its edges
    span = np.arange(-half, half + 1)
    rows = round(1.5 * u) + span
    cols = np.rint((1.5 + np.arange(_N_CELLS))[:, None] * u).astype(int) + span  # (cells, window)
    patch = image[rows[:, None, None], cols[None, :, :]].astype(np.float64)  # (window, cells, window[, 3])
    levels = patch.mean(axis=(0, 2) if patch.ndim == 3 else (0, 2, 3))
    black, white = levels[0], levels[1]
    if white - black < _MIN_CONTRAST:
        return None
    threshold = 0.5 * (black + white)
    data = levels[2:]
    if np.any(np.abs(data - threshold) < 0.2 * (white - black)):
        return None
    bits = (data < threshold).astype(int)
    if int(bits[:-1].sum()) & 1 != bits[-1]:
        return None
    return int("".join(map(str, bits[:-1])), 2)


# --- scene ---------------------------------------------------------------------------------------------------
_EYE_OFFSET_M = {"left": -0.032, "right": 0.032}  # half the interpupillary distance; other cameras: 0
_OBJECTS = np.array([[0.0, 1.2, -2.0], [-1.0, 1.6, -2.5], [1.2, 0.9, -1.8], [0.6, 2.2, -3.0]])
_OBJECT_RADII = np.array([0.15, 0.20, 0.12, 0.25, 0.12, 0.04, 0.04])  # ... then orbiter and two controllers
_OBJECT_COLORS = (
    *((40, 40, 200), (60, 170, 60), (190, 90, 30), (160, 60, 160)),  # BGR, the four fixed objects
    *((30, 200, 230), (240, 240, 240), (0, 140, 255)),  # orbiter, left and right controller
)
_ORBIT_CENTRE, _ORBIT_RADIUS_M, _ORBIT_PERIOD_S = np.array([0.0, 1.5, -1.5]), 0.5, 4.0


@functools.lru_cache(maxsize=4)
def _panorama(width: int, height: int, seed: int) -> np.ndarray:
    """A static backdrop wider and taller than a frame, so panning with the head is just a slice copy.

    Sky and floor gradients, a tiled floor, blocky buildings on the horizon and smooth noise: enough texture
    for JPEG sizes like a real camera's. Cached and read-only, shared by every camera and rig of that size.
    """
    focal = width / 2.0
    margin_x, margin_y = math.ceil(focal * HEAD_MAX_YAW_RAD) + 2, math.ceil(focal * HEAD_MAX_PITCH_RAD) + 2
    ph, pw = height + 2 * margin_y, width + 2 * margin_x
    horizon = ph // 2
    rng = np.random.default_rng([seed, 7])
    y = np.arange(ph, dtype=np.float32)[:, None, None]
    sky = np.array([235, 185, 130], np.float32) + (y / horizon) * np.array([15, 45, 80], np.float32)
    depth = np.maximum(y - horizon, 1.0)
    fade = depth / (ph - horizon)
    floor = np.array([95, 115, 135], np.float32) - fade * np.array([45, 55, 65], np.float32)
    pano = np.where(y < horizon, sky, floor) * np.ones((1, pw, 1), np.float32)
    # Floor tiles in perspective: row -> distance, column -> sideways offset at that distance.
    z = 1.6 * focal / depth[:, :, 0]
    xw = (np.arange(pw, dtype=np.float32)[None, :] - pw / 2) / focal * z
    tiles = ((np.floor(xw / 0.6) + np.floor(z / 0.6)) % 2 == 0) & (y[:, :, 0] > horizon + 2)
    pano[tiles] *= 0.8
    for _ in range(40):
        w, h = int(rng.integers(width // 20, width // 5)), int(rng.integers(height // 12, height // 3))
        x0 = int(rng.integers(0, pw - w))
        color = rng.uniform(60, 200, 3)
        pano[horizon - h : horizon, x0 : x0 + w] = color
        for _ in range(int(rng.integers(2, 8))):  # windows
            wx, wy = x0 + int(rng.integers(0, max(1, w - 8))), horizon - int(rng.integers(8, max(9, h)))
            pano[wy : wy + 6, wx : wx + 5] = color * 0.5
    coarse = rng.normal(0.0, 9.0, (ph // 6 + 1, pw // 6 + 1, 3)).astype(np.float32)
    pano += cv2.resize(coarse, (pw, ph), interpolation=cv2.INTER_CUBIC)
    pano += rng.normal(0.0, 2.0, pano.shape).astype(np.float32)
    out = np.clip(pano, 0, 255).astype(np.uint8)
    out.flags.writeable = False
    return out


class CameraRenderer:
    """Renders the rig's cameras: a pinhole with a 90° horizontal field of view looking out of the head."""

    def __init__(self, width: int, height: int, fps: float, seed: int, motion: RigMotion) -> None:
        self._width, self._height, self._fps, self._seed, self._motion = width, height, fps, seed, motion
        self._focal = width / 2.0

    def frame_time(self, frame_number: int) -> float:
        return frame_number / self._fps

    def render(self, camera: str, frame_number: int) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame ``frame_number`` of ``camera``, at t = frame_number / fps."""
        if not 0 <= frame_number <= MAX_FRAME_NUMBER:
            raise ValueError(f"frame_number must be in 0..{MAX_FRAME_NUMBER}, got {frame_number}")
        t = self.frame_time(frame_number)
        pano = _panorama(self._width, self._height, self._seed)
        yaw, pitch, _ = self._motion.head_angles(t)
        # Looking left (yaw > 0) slides the window left over the backdrop; looking up slides it up.
        spare_x, spare_y = pano.shape[1] - self._width, pano.shape[0] - self._height
        x0 = min(max(spare_x // 2 - round(self._focal * yaw), 0), spare_x)
        y0 = min(max(spare_y // 2 - round(self._focal * pitch), 0), spare_y)
        image = pano[y0 : y0 + self._height, x0 : x0 + self._width].copy()
        self._draw_objects(image, camera, t)
        draw_frame_overlay(image, camera, frame_number, t)
        return image

    def _draw_objects(self, image: np.ndarray, camera: str, t: float) -> None:
        """Project the stage objects, an orbiting ball and both controllers; draw them far to near."""
        head = self._motion.head_pose(t)
        quat = head[3:7]
        eye = head[:3] + quat_rotate(quat, np.array([_EYE_OFFSET_M.get(camera, 0.0), 0.0, 0.0]))
        angle = 2.0 * math.pi * t / _ORBIT_PERIOD_S
        orbiter = _ORBIT_CENTRE + _ORBIT_RADIUS_M * np.array([math.cos(angle), math.sin(angle), 0.0])
        hands = [self._motion.controller_pose(side, t)[:3] for side in ("left", "right")]
        points = np.vstack([_OBJECTS, orbiter, *hands])
        local = quat_rotate(quat_conj(quat), points - eye)  # camera frame: -Z forward, +Y up
        depth = -local[:, 2]
        limit = 4.0 * self._width
        for i in np.argsort(-depth):
            if depth[i] < 0.1:
                continue
            u = self._width / 2 + self._focal * local[i, 0] / depth[i]
            v = self._height / 2 - self._focal * local[i, 1] / depth[i]
            radius = self._focal * _OBJECT_RADII[i] / depth[i]
            if abs(u) > limit or abs(v) > limit or radius > limit:
                continue
            centre, r = (round(u), round(v)), max(1, round(radius))
            cv2.circle(image, centre, r, _OBJECT_COLORS[i], -1, cv2.LINE_AA)
            highlight = (round(u - 0.3 * radius), round(v - 0.3 * radius))
            cv2.circle(image, highlight, max(1, round(0.3 * radius)), (245, 245, 245), -1, cv2.LINE_AA)
