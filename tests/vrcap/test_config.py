"""Issue 13 §3: one schema per config section, YAML shipped in the package, overrides typed by the schema."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from tests.helpers import REPO, run_vrcap
from vrcap.config import CONFIG_DIR, build, config_names, load_config, read_yaml
from vrcap.errors import ConfigError

SECTIONS = {
    "capture": ("capture.config", "CaptureConfig", "capture.yaml"),
    "replay": ("replay.config", "ReplayConfig", "replay.yaml"),
    "train": ("training.config", "TrainConfig", "train/small.yaml"),
    "server": ("server.settings", "ServerSettings", "server.yaml"),
    "export": ("replay.export.config", "ExportConfig", "export.yaml"),
}


def _schema(section: str) -> type:
    import importlib

    module, name, _ = SECTIONS[section]
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _fields(cls: type, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(dotted name, JSON-schema property) of every leaf field."""
    schema = TypeAdapter(cls).json_schema()
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for name, prop in node["properties"].items():
            ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
            if ref:
                out += walk(defs[ref.split("/")[-1]], f"{where}{name}.")
            else:
                out.append((f"{where}{name}", prop))
        return out

    return walk(schema, prefix)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_the_defaults_are_the_shipped_yaml(section: str) -> None:
    """training's defaults said lr 3e-4, warmup 20, stride 16, max_steps 1000; small.yaml 1e-3, 50, 8, 2000."""
    cls = _schema(section)
    shipped = build(cls, read_yaml(CONFIG_DIR / SECTIONS[section][2]))
    assert dataclasses.asdict(shipped) == dataclasses.asdict(cls())


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_field_has_a_description_and_every_number_a_bound(section: str) -> None:
    fields = list(_fields(_schema(section)))
    assert len(fields) >= 8
    assert [n for n, p in fields if not p.get("description")] == []
    numbers = [(n, p) for n, p in fields if p.get("type") in ("integer", "number")]
    unbounded = [n for n, p in numbers if not ({"minimum", "exclusiveMinimum"} & p.keys())]
    assert unbounded == []
    assert [n for n, p in numbers if not ({"maximum", "exclusiveMaximum"} & p.keys())] == []


def test_reserve_bytes_is_bounded_in_the_schema_and_in_use() -> None:
    from capture.config import CaptureConfig

    prop = dict(_fields(CaptureConfig))["writer.reserve_bytes"]
    assert (prop["minimum"], prop["maximum"]) == (0, 64 * 2**20)
    with pytest.raises(
        ConfigError, match=r"writer\.reserve_bytes must be between 0 and 67108864 \(got 99999999999\)"
    ):
        load_config(CaptureConfig, None, ["writer.reserve_bytes=99999999999"], "capture.yaml")


def test_overrides_follow_the_schema_types_not_yaml_1_1() -> None:
    from capture.config import CaptureConfig
    from server.settings import ServerSettings

    server = load_config(ServerSettings, None, ["root=1:30", "cors_origins=[]"], "server.yaml")
    assert server.root == "1:30"  # YAML 1.1 read 1:30 as the sexagesimal number 90
    capture = load_config(CaptureConfig, None, ["writer.fsync=on", "record.audio=0", "writer.compress=No"])
    assert capture.writer.fsync is True and capture.writer.compress is False
    assert capture.record.audio == "0"  # a microphone index stays what was typed
    assert load_config(CaptureConfig, None, ['record.cameras=["a=0","b=1"]']).record.cameras == ["a=0", "b=1"]
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(CaptureConfig, None, ["writer.fsync=maybe"])


def test_a_bad_value_is_traced_to_where_the_user_typed_it(tmp_path: Path) -> None:
    """An override's error named the shipped YAML as its origin; the user typed it on the command line."""
    from replay.config import ReplayConfig

    with pytest.raises(ConfigError) as typed:
        load_config(ReplayConfig, None, ["images.size=64", "images.size=abc"], "replay.yaml")
    assert str(typed.value) == (
        "images.size must be an integer, got 'abc' (from the command line: images.size=abc)"
    )
    with pytest.raises(ConfigError) as unknown:
        load_config(ReplayConfig, None, ["images.sizee=3"], "replay.yaml")
    assert str(unknown.value).endswith("(from the command line: images.sizee=3)")
    with pytest.raises(ConfigError) as section:
        load_config(ReplayConfig, None, ["nope.x=3"], "replay.yaml")
    assert str(section.value).startswith("unknown setting 'nope'")
    assert str(section.value).endswith("(from the command line: nope.x=3)")
    with pytest.raises(ConfigError) as checked:  # a section's own check (__post_init__), named once
        load_config(ReplayConfig, None, ["pose.frame=up"], "replay.yaml")
    assert str(checked.value) == (
        "pose.frame must be one of stage, head (got 'up') (from the command line: pose.frame=up)"
    )
    own = tmp_path / "mine.yaml"
    own.write_text("images:\n  size: abc\n")
    with pytest.raises(ConfigError) as filed:
        load_config(ReplayConfig, own, ["step.rate_hz=30"], "replay.yaml")
    assert str(filed.value) == f"images.size must be an integer, got 'abc' (from {own})"


def test_config_names_and_paths() -> None:
    from training.config import load_train_config

    assert config_names("train") == ["1b", "small", "tiny"]
    assert load_train_config("tiny").model.d_model == 64
    assert load_train_config(CONFIG_DIR / "train" / "tiny.yaml").model.d_model == 64
    assert load_train_config(None).optim.lr == 1e-3
    with pytest.raises(ConfigError, match="shipped names: 1b, small, tiny"):
        load_train_config("tinyy")


def test_config_show_prints_the_resolved_config() -> None:
    shown = run_vrcap("config", "show", "train", "tiny", "optim.lr=0.01", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["model"]["d_model"] == 64 and data["optim"]["lr"] == 0.01
    text = run_vrcap("config", "show", "server", "root=1:30")
    assert text.returncode == 0 and "root: '1:30'" in text.stdout and "server.yaml" in text.stdout
    for section in SECTIONS:
        assert run_vrcap("config", "show", section).returncode == 0, section
    bad = run_vrcap("config", "show", "trian")
    assert bad.returncode == 2 and "sections: capture, export, replay, server, train" in bad.stderr


def test_train_accepts_a_config_name(tmp_path: Path) -> None:
    result = run_vrcap("estimate", "--config", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] < 2_000_000  # tiny's 1.05 M, not small's millions


_CHECK = """
import dataclasses, importlib, json, sys
import vrcap
from vrcap.config import CONFIG_DIR, build, read_yaml, config_names
sections = json.loads(sys.argv[1])
out = {"vrcap": vrcap.__file__, "config_dir": str(CONFIG_DIR), "train": config_names("train"), "equal": {}}
for section, (module, name, default) in sections.items():
    cls = getattr(importlib.import_module(module), name)
    out["equal"][section] = dataclasses.asdict(build(cls, read_yaml(CONFIG_DIR / default))) == dataclasses.asdict(cls())
print(json.dumps(out))
"""


def test_a_wheel_installed_elsewhere_ships_its_configs(tmp_path: Path) -> None:
    """Build the wheel, install it (not editable) into a fresh venv, and check from another folder."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(wheels.glob("vrcap-*.whl"))
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(fresh), "platbase": str(fresh)}))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # The dependencies come from this venv, appended *after* the fresh site-packages (no editable finder there).
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = fresh / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", _CHECK, json.dumps(SECTIONS)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["vrcap"].startswith(str(site)) and found["config_dir"].startswith(str(site))
    assert found["train"] == ["1b", "small", "tiny"]
    assert found["equal"] == dict.fromkeys(SECTIONS, True)
    shown = subprocess.run(
        [str(python), "-m", "vrcap", "config", "show", "train", "tiny", "--json"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout)["model"]["d_model"] == 64
