"""Words for counts and durations in messages, so "1 errors" and "00:60.0" cannot be written by hand again."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``plural(1, "error")`` is "1 error", ``plural(2, "error")`` "2 errors"."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def clock(seconds: float) -> str:
    """MM:SS.s, rounded before it is split, so 59.96 s reads 01:00.0 and never 00:60.0."""
    tenths = max(0, round(seconds * 10))
    minutes, rest = divmod(tenths, 600)
    return f"{minutes:02d}:{rest / 10:04.1f}"


def dropped_words(frames: int, samples: dict[str, int]) -> str:
    """The same words for drops in the live status line and the summary: frames, then samples if any."""
    lost = sum(samples.values())
    return f"{plural(frames, 'frame')} dropped" + (f", {plural(lost, 'sample')} dropped" if lost else "")
