"""Synthetic speech for the simulated microphone: each task's transcript, word by word, in a seeded voice.

Why: a model should be able to hear what is said and line it up with the transcript, and two seeds must not
sound alike. This is not speech synthesis: each word is a harmonic sound whose two formants glide between two
vowels picked by a hash of the word, so one word always sounds the same in one voice and differently from other
words. The voice (pitch, speaking rate, formant scale) comes from the seed.

Words never overlap the calibration tones and chirps of capture/sim_media.py: a word that would come within
``GUARD_MS`` of one waits until ``GUARD_MS`` after it. So each tone keeps its exact onset and the silence
around it, and every sample outside a tone, chirp or word is exactly zero. Everything is in integer sample
indices: the same seed gives bit-identical audio in blocks of any size.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from capture.sim_tasks import EPISODE_S, Task, TaskSchedule

SPEECH_AMPLITUDE = 0.3  # peak of a word, fraction of full scale (the tones are at 0.5)
WORD_GAP_MS = 50  # silence between words
GUARD_MS = 45  # silence kept before and after every tone and chirp (>= 40 ms, with room for rounding)
VOICE_STREAM = 0x5EEC  # second word of the voice generator's seed
_MAX_HARMONIC_HZ = 3800.0
_FADE_MS = 12
# (F1, F2) of six vowels, Hz (adult averages); a word glides from one to another.
_VOWELS = ((730, 1090), (530, 1840), (270, 2290), (570, 840), (300, 870), (500, 1500))
_BANDWIDTH_HZ = 160.0

Bursts = Callable[
    [int, int], Iterable[tuple[int, int]]
]  # (start, length) of the tones overlapping [first, end)


@dataclass(frozen=True)
class Voice:
    """How the simulated person sounds; drawn from the seed."""

    f0_hz: float  # pitch
    rate: float  # speaking rate: word durations are divided by it
    formant_scale: float  # vocal tract size: every formant is multiplied by it

    @classmethod
    def from_seed(cls, seed: int) -> Voice:
        rng = np.random.default_rng([seed, VOICE_STREAM])
        return cls(
            float(rng.uniform(95.0, 230.0)), float(rng.uniform(0.95, 1.25)), float(rng.uniform(0.9, 1.12))
        )


@dataclass(frozen=True)
class Word:
    """One spoken word: samples [start, start + length) of the microphone."""

    start: int
    length: int
    text: str
    f0_hz: float
    glide: float  # relative pitch change over the word
    formants: tuple[float, float, float, float]  # F1 and F2 at the start, F1 and F2 at the end
    syllables: int
    norm: float  # the envelope-free peak bound, so the word peaks at SPEECH_AMPLITUDE at most


def _syllables(text: str) -> int:
    groups, previous = 0, False
    for ch in text:
        vowel = ch in "aeiouy"
        groups += vowel and not previous
        previous = vowel
    return max(1, min(groups, 4))


class SpeechTrack:
    """The narrator of a TaskSchedule: places each transcript's words on the sample grid and renders them."""

    def __init__(self, rate_hz: int, voice: Voice, bursts: Bursts) -> None:
        self.rate_hz, self._voice, self._bursts = rate_hz, voice, bursts
        self._gap = self._ms(WORD_GAP_MS)
        self._guard = self._ms(GUARD_MS)
        fade = self._ms(_FADE_MS)
        self._fade = np.append(0.5 - 0.5 * np.cos(np.pi * np.arange(1, fade + 1) / (fade + 1)), 1.0)

    def _ms(self, ms: float) -> int:
        return round(ms * self.rate_hz / 1000)

    def place(self, task: Task, after: int) -> list[Word]:
        """The words of ``task.transcript`` from sample ``after`` on, WORD_GAP_MS apart, clear of the tones."""
        words, start = [], after
        for text in task.transcript.split():
            word = self._make_word(text, 0)
            start = self._clear_of_bursts(start, word.length)
            words.append(dataclasses.replace(word, start=start))
            start += word.length + self._gap
        return words

    def add(self, out: np.ndarray, first: int, tasks: TaskSchedule) -> None:
        """Add the words overlapping samples [first, first + len(out)) into ``out`` (float, mono)."""
        end = first + len(out)
        per_episode = EPISODE_S * self.rate_hz
        for number in range(first // per_episode, (end - 1) // per_episode + 1):
            episode = tasks.episode(number)
            i = max(0, bisect.bisect_right(episode.word_starts, first) - 1)
            while i < len(episode.words) and (word := episode.words[i]).start < end:
                lo, hi = max(word.start, first), min(word.start + word.length, end)
                if lo < hi:
                    out[lo - first : hi - first] += self.samples(word.text)[lo - word.start : hi - word.start]
                i += 1

    def _clear_of_bursts(self, start: int, length: int) -> int:
        """The first start >= ``start`` that keeps the word GUARD_MS away from every tone and chirp."""
        while True:
            spans = list(self._bursts(start - self._guard, start + length + self._guard))
            if not spans:
                return start
            start = max(s + n for s, n in spans) + self._guard

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a handful of words per voice; the track lives as long as its rig
    def _make_word(self, text: str, start: int) -> Word:
        voice = self._voice
        h = zlib.crc32(text.encode())
        a, b = _VOWELS[h % 6], _VOWELS[(h // 6) % 6]
        glide = ((h // 36) % 9 - 4) * 0.04
        f1a, f2a, f1b, f2b = (f * voice.formant_scale for f in (a[0], a[1], b[0], b[1]))
        length = self._ms(min(550.0, max(200.0, 110.0 + 55.0 * len(text))) / voice.rate)
        word = Word(start, length, text, voice.f0_hz, glide, (f1a, f2a, f1b, f2b), _syllables(text), 1.0)
        grid = np.linspace(0, length - 1, 24).astype(np.int64)
        bound = 1.05 * float(
            self._harmonic_amps(word, grid).sum(axis=0).max()
        )  # 5%: peaks between grid points
        return dataclasses.replace(word, norm=bound)

    # --- sound -------------------------------------------------------------------------------------

    @functools.lru_cache(maxsize=256)  # noqa: B019 - a word sounds the same wherever it is said: render it once
    def samples(self, text: str) -> np.ndarray:
        """The sound of ``text`` in this voice, from its first sample (read-only, cached)."""
        word = self._make_word(text, 0)
        wave = self._wave(word, np.arange(word.length))
        wave.flags.writeable = False
        return wave

    def _harmonic_amps(self, word: Word, k: np.ndarray) -> np.ndarray:
        """(harmonics, len(k)) amplitude of each harmonic at offsets ``k``: two gliding formant peaks."""
        frac = k / word.length
        f0 = word.f0_hz * (1.0 + word.glide * frac)
        top = int(_MAX_HARMONIC_HZ // (word.f0_hz * (1.0 + max(word.glide, 0.0))))
        freqs = np.arange(1, top + 1)[:, None] * f0[None, :]
        f1a, f2a, f1b, f2b = word.formants
        f1, f2 = f1a + (f1b - f1a) * frac, f2a + (f2b - f2a) * frac
        return np.exp(-(((freqs - f1) / _BANDWIDTH_HZ) ** 2)) + 0.6 * np.exp(
            -(((freqs - f2) / _BANDWIDTH_HZ) ** 2)
        )

    def _wave(self, word: Word, k: np.ndarray) -> np.ndarray:
        """Samples of ``word`` at offsets ``k`` (unit peak times SPEECH_AMPLITUDE): a function of k alone.

        The formant weights change slowly, so they are computed every 64 samples and interpolated; cos(h·θ)
        comes from the Chebyshev recurrence rather than one cosine per harmonic and sample.
        """
        tau = k / self.rate_hz
        seconds = word.length / self.rate_hz
        theta = 2.0 * math.pi * word.f0_hz * (tau + 0.5 * word.glide * tau * tau / seconds)
        grid = np.append(np.arange(0, word.length, 64), word.length - 1)
        coarse = self._harmonic_amps(word, grid)
        cos1 = np.cos(theta)
        previous, current = np.ones_like(theta), cos1
        voiced = np.interp(k, grid, coarse[0]) * current
        for h in range(1, coarse.shape[0]):
            previous, current = current, 2.0 * cos1 * current - previous
            voiced += np.interp(k, grid, coarse[h]) * current
        voiced /= word.norm
        fade_len = len(self._fade) - 1
        edge = np.minimum(
            self._fade[np.minimum(k, fade_len)], self._fade[np.minimum(word.length - 1 - k, fade_len)]
        )
        syllable = 0.55 + 0.45 * np.sin(math.pi * word.syllables * k / word.length) ** 2
        return SPEECH_AMPLITUDE * edge * syllable * voiced
