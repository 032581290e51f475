"""`vrcap annotate --import`: SRT, WebVTT and JSON into a session, crash-safe, idempotent, checked and replayed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from replay.config import load_replay_config
from replay.convert import convert_sessions
from replay.tokenizer import decode
from tests.helpers import run_vrcap
from tests.replay.conftest import T0, write_sim_session
from vrcap.annotate_format import S_END, list_sidecars, read_sidecar
from vrcap.metadata import load_meta

SRT = """1
00:00:00,500 --> 00:00:01,250
reach for the cup

2
00:00:02,000 --> 00:00:02,400
now put it
down gently
"""
VTT = """WEBVTT

00:00:01.000 --> 00:00:01.500
<v Ana>pick it up</v>
"""


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return write_sim_session(tmp_path / "s", 3.0, cameras=(), hands=False, tasks=False)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _recorded_bytes(session: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(session.iterdir()):
        if not f.name.startswith(("annotations-", ".annotations-")):
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _first_t(session: Path) -> int:
    return int(load_meta(session).stats["first_t"])


def test_srt_cues_land_at_their_times_and_validate(session: Path, tmp_path: Path) -> None:
    before = _recorded_bytes(session)
    done = run_vrcap("annotate", str(session), "--import", str(_write(tmp_path, "a.srt", SRT)))
    assert done.returncode == 0, done.stderr
    assert "imported 2 events" in done.stderr
    [path] = list_sidecars(session)
    events = read_sidecar(path).events
    zero = _first_t(session)
    assert zero == T0  # the first frame: what replay calls step 0
    assert [(e["t"] - zero, e[S_END] - zero) for e in events] == [
        (500_000_000, 1_250_000_000),
        (2_000_000_000, 2_400_000_000),
    ]
    assert [e["d"] for e in events] == [
        {"text": "reach for the cup", "kind": "transcript", "channel": "external"},
        {"text": "now put it down gently", "kind": "transcript", "channel": "external"},
    ]
    assert _recorded_bytes(session) == before  # the recording itself is never rewritten
    checked = run_vrcap("validate", str(session), "--json")
    assert checked.returncode == 0, checked.stdout
    assert not [f for f in json.loads(checked.stdout)["findings"] if f["code"].startswith("annotations")]


def test_importing_twice_writes_nothing_the_second_time(session: Path, tmp_path: Path) -> None:
    srt = _write(tmp_path, "a.srt", SRT)
    assert run_vrcap("annotate", str(session), "--import", str(srt)).returncode == 0
    [path] = list_sidecars(session)
    stamp = path.stat().st_mtime_ns, path.read_bytes()
    again = run_vrcap("annotate", str(session), "--import", str(srt))
    assert again.returncode == 0 and "already imported" in again.stderr
    assert list_sidecars(session) == [path] and (path.stat().st_mtime_ns, path.read_bytes()) == stamp
    # The same events from JSON are the same content, hence the same sidecar: still no duplicate.
    same = [
        {"start": 0.5, "end": 1.25, "text": "reach for the cup"},
        {
            "start": 2.0,
            "end": 2.4,
            "text": "now put it down gently",
            "kind": "transcript",
            "channel": "external",
        },
    ]
    as_json = run_vrcap(
        "annotate", str(session), "--import", str(_write(tmp_path, "a.json", json.dumps(same)))
    )
    assert (
        as_json.returncode == 0 and "already imported" in as_json.stderr and len(list_sidecars(session)) == 1
    )


def test_webvtt_with_kind_and_channel(session: Path, tmp_path: Path) -> None:
    vtt = _write(tmp_path, "i.vtt", VTT)
    done = run_vrcap(
        "annotate", str(session), "--import", str(vtt), "--kind", "instruction", "--channel", "internal"
    )
    assert done.returncode == 0, done.stderr
    [event] = read_sidecar(list_sidecars(session)[0]).events
    assert event["t"] - _first_t(session) == 1_000_000_000
    assert event["d"] == {
        "text": "pick it up",
        "kind": "instruction",
        "channel": "internal",
    }  # voice tag dropped


def test_absolute_times_map_through_the_start_pair(session: Path, tmp_path: Path) -> None:
    start = load_meta(session).start
    wall0 = start["wall_ns"] + (_first_t(session) - start["mono_ns"])  # wall-clock of the first frame
    at = datetime.fromtimestamp((wall0 + 1_500_000_000) / 1e9, tz=timezone.utc)
    cues = [
        {"start": at.isoformat(), "text": "iso time"},
        {"start": (wall0 + 2_250_000_000) / 1e9, "text": "unix"},
    ]
    done = run_vrcap(
        "annotate", str(session), "--import", str(_write(tmp_path, "w.json", json.dumps(cues))), "--absolute"
    )
    assert done.returncode == 0, done.stderr
    events = read_sidecar(list_sidecars(session)[0]).events
    offsets = {e["d"]["text"]: (e["t"] - _first_t(session)) / 1e6 for e in events}
    assert offsets["iso time"] == pytest.approx(1500.0, abs=0.001)  # isoformat keeps microseconds
    assert offsets["unix"] == pytest.approx(2250.0, abs=0.001)  # float seconds: sub-microsecond rounding


def test_absolute_srt_times_are_utc_times_of_day(session: Path, tmp_path: Path) -> None:
    start = load_meta(session).start
    wall0 = start["wall_ns"] + (_first_t(session) - start["mono_ns"])
    day = datetime.fromtimestamp((wall0 + 1_000_000_000) / 1e9, tz=timezone.utc)
    stamp = day.strftime("%H:%M:%S,") + f"{day.microsecond // 1000:03d}"
    srt = _write(tmp_path, "d.srt", f"1\n{stamp} --> {stamp}\nat one second\n")
    done = run_vrcap("annotate", str(session), "--import", str(srt), "--absolute")
    assert done.returncode == 0, done.stderr
    [event] = read_sidecar(list_sidecars(session)[0]).events
    assert abs((event["t"] - _first_t(session)) / 1e6 - 1000.0) <= 1.0  # SRT has milliseconds


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.srt", "this is not a subtitle file\n", "not valid SRT"),
        ("bad.vtt", "00:00:01.000 --> 00:00:02.000\nno header\n", "not valid WebVTT"),
        ("bad.json", '{"start": 1}', "expected a JSON list"),
        ("bad2.json", '[{"start": 1, "text": "x", "kind": "shout"}]', 'entry 0 "kind" must be one of'),
        ("bad3.json", '[{"start": "soon", "text": "x"}]', "or pass --absolute"),
        ("bad4.json", '[{"start": 1, "text": "x"', "not valid JSON"),
        (
            "late.srt",
            "1\n00:10:00,000 --> 00:10:01,000\nten minutes in\n",
            "outside the recording (0 to 2.989 s)",
        ),
        ("notes.txt", "hello", "cannot tell the format"),
        ("empty.srt", "", "no cues found"),
    ],
)
def test_bad_files_are_one_line_exit_2_and_touch_nothing(
    session: Path, tmp_path: Path, name: str, text: str, message: str
) -> None:
    before = _recorded_bytes(session)
    done = run_vrcap("annotate", str(session), "--import", str(_write(tmp_path, name, text)))
    assert done.returncode == 2, done.stderr
    assert (
        message in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
        and "Traceback" not in done.stderr
    )
    assert list_sidecars(session) == [] and _recorded_bytes(session) == before


def test_missing_file_and_bad_session_are_one_line(session: Path, tmp_path: Path) -> None:
    gone = run_vrcap("annotate", str(session), "--import", str(tmp_path / "nope.srt"))
    assert gone.returncode == 2 and "no such file" in gone.stderr
    srt = _write(tmp_path, "a.srt", SRT)
    not_session = run_vrcap("annotate", str(tmp_path), "--import", str(srt))
    assert not_session.returncode == 2 and len(not_session.stderr.strip().splitlines()) == 1


def test_interrupted_and_damaged_imports_are_reported(session: Path, tmp_path: Path) -> None:
    assert (
        run_vrcap("annotate", str(session), "--import", str(_write(tmp_path, "a.srt", SRT))).returncode == 0
    )
    [path] = list_sidecars(session)
    # An import killed before its rename leaves only a temp file: ignored, and validate says so.
    (session / f".{path.name.replace('annotations-', 'annotations-0')}.tmp-123").write_bytes(b"\x89VRC half")
    report = run_vrcap("validate", str(session), "--json")
    assert report.returncode == 0
    assert [
        f["code"] for f in json.loads(report.stdout)["findings"] if f["code"].startswith("annotations")
    ] == ["annotations-tmp"]
    # A sidecar edited or damaged after the fact is an error that names the file and the fix.
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x20
    path.write_bytes(bytes(data))
    broken = run_vrcap("validate", str(session), "--json")
    assert broken.returncode == 1
    errors = [f for f in json.loads(broken.stdout)["findings"] if f["code"] == "annotations"]
    assert (
        len(errors) == 1
        and path.name in errors[0]["message"]
        and "import its file again" in errors[0]["message"]
    )


def test_replay_puts_imported_text_at_its_step(session: Path, tmp_path: Path) -> None:
    out = tmp_path / "t"
    config = load_replay_config()
    convert_sessions([session], out, config, progress=False, log=lambda m: None)
    for name, text in (("a.srt", SRT), ("i.vtt", VTT)):
        extra = ("--kind", "instruction", "--channel", "internal") if name.endswith(".vtt") else ()
        assert (
            run_vrcap(
                "annotate", str(session), "--import", str(_write(tmp_path, name, text)), *extra
            ).returncode
            == 0
        )
    convert_sessions([session], out, config, progress=False, log=lambda m: None)  # converted again: new text
    from safetensors.numpy import load_file

    shard = load_file(str(out / "shards" / "s.safetensors"))
    external = np.flatnonzero(shard["text.external.mask"]).tolist()
    internal = np.flatnonzero(shard["text.internal.mask"]).tolist()
    assert external == [15, 60] and internal == [30]  # 0.5 s, 2.0 s and 1.0 s at 30 steps/s
    assert decode(shard["text.external"][60].tolist()) == ["now put it down gently"]
    assert decode(shard["text.internal"][30].tolist()) == ["pick it up"]
