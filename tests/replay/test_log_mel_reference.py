"""Log-mel against a reference implementation (librosa): same filters, same windows, same numbers.

replay's log-mel is hand-written numpy (no download, two threads); a reference computed by librosa from the
same samples with the same parameters (HTK mel scale, unnormalized triangles, power 2, symmetric Hann, no
centring) must agree to float32 rounding — a wrong filter edge, window or frame offset would not.
"""

from __future__ import annotations

import numpy as np

from replay.audio_features import LOG_FLOOR, log_mel, mel_filterbank
from tests.helpers import require_module

librosa = require_module("librosa", "it is in the dev extra: pip install -e '.[dev]'")

RATE, WINDOW, HOP, N_MELS, FMIN, FMAX = 48000, 1200, 480, 40, 20.0, 8000.0


def _signal(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    rng = np.random.default_rng(3)
    chirp = np.sin(2 * np.pi * (200 + 3000 * t) * t)  # sweeps through many filters
    return (0.5 * chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_filterbank_equals_librosas_htk_filters() -> None:
    ours = mel_filterbank(RATE, WINDOW, N_MELS, FMIN, FMAX)  # (bins, mels)
    ref = librosa.filters.mel(sr=RATE, n_fft=WINDOW, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=True, norm=None)
    assert ours.shape == ref.T.shape == (WINDOW // 2 + 1, N_MELS)
    np.testing.assert_allclose(ours, ref.T, atol=1e-5)


def test_log_mel_equals_librosas_melspectrogram() -> None:
    mono = _signal()
    frame_ends = np.arange(WINDOW, mono.size + 1, HOP)  # each frame: the WINDOW samples ending here
    ours = log_mel(mono, 0, frame_ends, RATE, WINDOW, N_MELS, FMIN, FMAX)
    power = librosa.feature.melspectrogram(
        y=mono, sr=RATE, n_fft=WINDOW, hop_length=HOP, win_length=WINDOW, window=np.hanning(WINDOW),
        center=False, power=2.0, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=True, norm=None,
    )  # fmt: skip
    ref = np.log(np.maximum(power.T, LOG_FLOOR))
    assert ours.shape == ref.shape == (frame_ends.size, N_MELS)
    loud = ref > np.log(1e-6)  # where float32 rounding of tiny powers does not dominate the log
    assert loud.mean() > 0.9
    np.testing.assert_allclose(ours[loud], ref[loud], atol=1e-3)
    # And a frame offset by one hop is far off: the comparison can tell frames apart.
    assert np.abs(ours[1:] - ref[:-1])[loud[1:]].mean() > 0.05
