"""Run hygiene (issue 11, section 5), as a new user meets it: one run per --out, the resolved config in the run
folder, refusals in one line with exit 2, best.pt and early stopping, and `vrcap eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_vrcap
from tests.training.conftest import TINY
from tests.training.test_cli import _one_line_error
from training.config import load_train_config
from vrcap.config import to_dict


def train(data: Path, out: Path, *extra: str) -> object:
    return run_vrcap("train", "--config", str(TINY), "--data", str(data), "--out", str(out), *extra)


@pytest.fixture(scope="module")
def run_dir(sim_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-step tiny run with a validation pass every 4 steps."""
    out = tmp_path_factory.mktemp("hygiene") / "run"
    result = train(sim_data, out, "--max-steps", "12", "eval_interval=4", "optim.lr=0.01")
    assert result.returncode == 0, result.stderr
    return out


def test_a_folder_holding_a_run_is_refused_unless_resumed(sim_data: Path, run_dir: Path) -> None:
    before = (run_dir / "metrics.jsonl").read_bytes()
    _one_line_error(train(sim_data, run_dir, "--max-steps", "2"), 2, f"--out {run_dir} holds a run at step 12",
                    "--resume auto")  # fmt: skip
    assert (run_dir / "metrics.jsonl").read_bytes() == before  # nothing of the first run touched


def test_the_resolved_config_is_written_at_start(run_dir: Path) -> None:
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    expected = to_dict(load_train_config(TINY, ["eval_interval=4", "optim.lr=0.01"]))
    assert written == expected and written["optim"]["lr"] == 0.01 and written["model"]["horizon"] == 15


def test_validation_passes_log_baselines_and_keep_best(run_dir: Path) -> None:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    passes = [r for r in rows if "val/loss/total" in r]
    assert [r["step"] for r in passes] == [4, 8, 12]
    last = passes[-1]
    for name in ("animation/head_pos_mm@0.1s", "audio/logmel_mse", "external_text/token_accuracy"):
        assert f"val/{name}" in last
    assert (
        last["val/animation/head_pos_mm@0.1s|hold"] > 0 and "val/animation/head_pos_mm@0.1s|const_vel" in last
    )
    best = [r for r in rows if r.get("event") == "best"]
    values = [r["val/loss/total"] for r in passes]
    assert (
        best
        and best[-1]["value"] == min(values)
        and best[-1]["step"] == passes[values.index(min(values))]["step"]
    )
    assert json.loads((run_dir / "checkpoints" / "best.json").read_text())["step"] == best[-1]["step"]


def test_early_stopping_ends_the_run(sim_data: Path, tmp_path: Path) -> None:
    # lr 0 never improves the validation loss: the second and third passes are no better, patience 2 stops at 12
    result = train(sim_data, tmp_path, "--max-steps", "40", "eval_interval=4", "early_stop_patience=2",
                   "optim.lr=1e-12", "optim.warmup_steps=0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "early stop at step 12" in result.stderr
    assert json.loads((tmp_path / "checkpoints" / "ckpt-00000012.json").read_text())["step"] == 12


def test_text_only_mode_on_text_less_sessions_refuses(tmp_path: Path) -> None:
    textless = tmp_path / "textless"
    result = run_vrcap("record", "--session", "plain", "--root", str(tmp_path / "s"), "--source", "sim",
                       "--duration", "4", "--offline", "sim.tasks=false")  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run_vrcap(
        "replay", str(tmp_path / "s" / "plain"), "--to-tensors", str(textless), "split.gap_steps=16"
    )
    assert result.returncode == 0, result.stderr
    result = train(textless, tmp_path / "run", "loss_weights.audio=0", "loss_weights.animation=0")
    _one_line_error(result, 2, "no targets for internal_text, external_text", "vrcap annotate")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_eval_cli_reports_physical_units_and_the_text_ablation_changes_it(
    sim_data: Path, run_dir: Path
) -> None:
    ckpt = str(run_dir / "checkpoints" / "best.pt")
    plain = run_vrcap("eval", "--checkpoint", ckpt, "--data", str(sim_data), "--split", "train", "--json")
    dropped = run_vrcap("eval", "--checkpoint", ckpt, "--data", str(sim_data), "--split", "train", "--json",
                        "--drop", "text")  # fmt: skip
    assert plain.returncode == 0 and dropped.returncode == 0, plain.stderr + dropped.stderr
    a, b = json.loads(plain.stdout)["metrics"], json.loads(dropped.stdout)["metrics"]
    assert a["animation/head_pos_mm@0.1s|hold"] == b["animation/head_pos_mm@0.1s|hold"]  # same windows
    assert a["animation/head_pos_mm@0.1s"] != b["animation/head_pos_mm@0.1s"]  # the input mattered
    assert a["loss/internal_text"] != b["loss/internal_text"]
    table = run_vrcap("eval", "--checkpoint", ckpt, "--data", str(sim_data), "--split", "test")
    assert table.returncode == 0 and "[test]" in table.stdout and "beats" in table.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["eval", "--checkpoint", "nope.pt", "--data", "x"], ["--checkpoint nope.pt does not exist"]),
        (["eval", "--checkpoint", "{ckpt}", "--data", "{data}", "--drop", "smell"], ["--drop smell: unknown input"]),
        (["train", "--config", str(TINY), "--data", "{data}", "--out", "{tmp}/r", "--resume", "x.pt"],
         ["--resume x.pt: no such checkpoint"]),
        (["train", "--config", str(TINY), "--data", "{data}", "--out", "{tmp}/r", "data.window=64",
          "model.max_window=64"], ["split into time blocks 16 steps apart", "split.gap_steps=64"]),
        (["train", "--config", str(TINY), "--data", "{data}", "--out", "{tmp}/r", "eval_split=test",
          "best_metric=nope"], ["best_metric 'nope' is not measured"]),
    ],
)  # fmt: skip
def test_refusals_are_one_line_exit_2(
    args: list[str], needles: list[str], sim_data: Path, run_dir: Path, tmp_path: Path
) -> None:
    fill = {"ckpt": str(run_dir / "checkpoints" / "best.pt"), "data": str(sim_data), "tmp": str(tmp_path)}
    _one_line_error(run_vrcap(*[a.format(**fill) for a in args]), 2, *needles)


def test_the_global_batch_is_kept_at_any_number_of_processes() -> None:
    from training.loop import split_global_batch
    from vrcap.errors import UsageError

    assert split_global_batch(8, 1, 1) == (8, 1)
    assert split_global_batch(8, 1, 2) == (4, 1)  # the shipped configs under torchrun: 2 x 4 = 8
    assert split_global_batch(8, 8, 8) == (8, 1) and split_global_batch(2, 2, 2) == (2, 1)
    assert split_global_batch(4, 2, 4) == (2, 1)  # 8 windows: 4 processes x 2
    with pytest.raises(UsageError, match="= 3 cannot be shared by 2 processes"):
        split_global_batch(3, 1, 2)
    with pytest.raises(UsageError, match="= 24 cannot be shared by 4 processes"):
        split_global_batch(4, 6, 4)  # 6 windows each would be a bigger micro-batch than configured: refused
