"""The commands as a user types them: one-line errors with exit codes, estimate, infer, profile, torchrun."""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, run_vrcap
from tests.training.conftest import TINY

ONE_B = REPO / "vrcap" / "configs" / "train" / "1b.yaml"


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("vrcap ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_config_value_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_vrcap("train", "--config", str(TINY), "--data", str(tmp_path), "optim.lr=-1")
    _one_line_error(
        result, 2, "vrcap train: error:", "optim.lr must be in (0, 1e+30] (got -1.0)",
        "(from the command line: optim.lr=-1)",
    )  # fmt: skip
    result = run_vrcap("train", "--config", str(TINY), "--data", str(tmp_path), "model.widht=3")
    _one_line_error(result, 2, "unknown setting 'model.widht'", "d_model")


def test_estimate_1b_counts_about_1e9_on_the_meta_device() -> None:
    result = run_vrcap("estimate", "--config", str(ONE_B), "--json")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0.9e9 <= report["params"] <= 1.2e9
    assert report["effective_batch"] == 64 and report["max_steps"] == 1_000_000
    assert report["training_flops"] >= 6 * report["params"] * report["total_tokens"]
    assert set(report["wall_clock_s"]) == {"A100 SXM", "H100 SXM", "RTX 4090"}
    assert peak_mb < 2000  # 1e9 float32 parameters would be 4 GB: nothing of them is allocated (meta device)
    assert report["window_s"] == 256 / 30 and report["host_to_device_bytes_per_step"] > 1e9
    text = run_vrcap("estimate", "--config", str(ONE_B)).stdout
    assert "assumptions:" in text and "RTX 4090" in text and "step clock 30 Hz" in text
    small = run_vrcap("estimate").stdout  # the default config: seconds, not "0.0 min"
    assert "0.0 min" not in small and re.search(r"A100 SXM +[0-9.]+ s \(at 50%\)", small), small


def test_dataset_that_does_not_fit_names_the_field(sim_data: Path, tmp_path: Path) -> None:
    result = run_vrcap(
        "train", "--config", str(TINY), "--data", str(sim_data), "--out", str(tmp_path), "model.mel_bins=64"
    )
    _one_line_error(result, 2, "model.mel_bins is 64 in the config but 80 in the data")
    result = run_vrcap(
        "train", "--config", str(TINY), "--data", str(sim_data), "--out", str(tmp_path), "data.batch_size=100"
    )
    blocks = json.loads((sim_data / "manifest.json").read_text())["split_ranges"]["train"].values()
    windows = sum((b - a - 16) // 4 + 1 for spans in blocks for a, b in spans)  # tiny: window 16, stride 4
    _one_line_error(
        result, 2, f"{windows} windows of 16 steps (stride 4)", "fewer than one global batch of 100"
    )


def test_nan_loss_stops_with_step_and_last_good_checkpoint(sim_data: Path, tmp_path: Path) -> None:
    # An absurd learning rate: step 1's update blows the weights up, step 2's loss is NaN.
    args = (
        "--data",
        str(sim_data),
        "--out",
        str(tmp_path),
        "optim.lr=1.0e+30",
        "optim.warmup_steps=0",
        "save_interval=1",
    )
    result = run_vrcap("train", "--config", str(TINY), *args, "--max-steps", "20")
    line = _one_line_error(result, 1, "loss is not finite at step 2", "lower optim.lr")
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / 'ckpt-00000001.pt'}" in line
    events = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "non_finite" and events[-1]["step"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one_process(sim_data: Path, tmp_path: Path) -> None:
    """Same global batch (2 per process x 2 processes vs 2 x 2 accumulation), same windows, same result."""
    common = ["--config", str(TINY), "--data", str(sim_data), "--max-steps", "8", "data.batch_size=2",
              "optim.grad_accum=2", "threads=1"]  # fmt: skip
    torchrun = Path(sys.executable).parent / "torchrun"
    ddp = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
         "-m", "vrcap.cli", "train", *common, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "x2:" in ddp.stderr  # "training N parameters on cpu x2: ..."
    one = run_vrcap("train", *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    a = torch.load(tmp_path / "ddp/checkpoints/final.pt", weights_only=True)
    b = torch.load(tmp_path / "one/checkpoints/final.pt", weights_only=True)
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and b["world_size"] == 1
    diff = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in b["model"])
    print(f"max |ddp - single| after 8 steps: {diff:.3g}")
    assert diff <= 1e-5


@pytest.fixture(scope="module")
def trained_checkpoint(sim_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("infer-run")
    result = run_vrcap(
        "train", "--config", str(TINY), "--data", str(sim_data), "--out", str(out), "--max-steps", "30"
    )
    assert result.returncode == 0, result.stderr
    return out / "checkpoints" / "final.pt"


def test_infer_reports_per_modality_errors(sim_data: Path, trained_checkpoint: Path, tmp_path: Path) -> None:
    session = sim_data.parent / "sessions" / "sim-text"
    result = run_vrcap(
        "infer",
        "--checkpoint",
        str(trained_checkpoint),
        "--session",
        str(session),
        "--out",
        str(tmp_path / "r.json"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    metrics = report["metrics"]
    manifest = json.loads((sim_data / "manifest.json").read_text())
    assert report["steps"] == manifest["sessions"]["sim-text"]["steps"] >= 110 and report["step"] == 30
    for group in ("head", "controllers", "hands"):  # physical units, beside both animation baselines
        model = metrics[f"animation/{group}_pos_mm@0.1s"]
        assert 0 < model < 500 and metrics[f"animation/{group}_pos_mm@0.1s|hold"] > 0
        assert metrics[f"animation/{group}_pos_mm@0.1s|const_vel"] > 0
        assert 0 <= metrics[f"animation/{group}_rot_deg@0.1s"] <= 180
    assert metrics["audio/logmel_mse"] >= 0 and "audio/logmel_mse|repeat_last" in metrics
    assert (
        0 <= metrics["internal_text/token_accuracy"] <= 1
        and metrics["internal_text/token_accuracy|no_text"] == 0
    )
    assert "beats" in result.stdout and "animation/head_pos_mm@0.1s" in result.stdout


def test_infer_on_an_unfinished_session_suggests_the_repair(
    sim_data: Path, trained_checkpoint: Path, tmp_path: Path
) -> None:
    """It suggested --allow-invalid, which infer does not take."""
    session = shutil.copytree(sim_data.parent / "sessions" / "sim-text", tmp_path / "crashed")
    meta = json.loads((session / "session.json").read_text())
    meta.update(status="recording", stop=None, stats={}, segments=[])
    (session / "session.json").write_text(json.dumps(meta))
    result = run_vrcap("infer", "--checkpoint", str(trained_checkpoint), "--session", str(session))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "--allow-invalid" not in result.stderr
    assert f"vrcap validate --fix {session}" in result.stderr


def test_profile_writes_trace_and_report(sim_data: Path, tmp_path: Path) -> None:
    result = run_vrcap(
        "profile", "--config", str(TINY), "--data", str(sim_data), "--out", str(tmp_path), "--steps", "3"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "profile_report.json").read_text())
    for region in ("encoder/camera", "encoder/audio", "encoder/pose", "transformer", "head/animation", "head/audio",
                   "head/internal_text", "forward", "backward", "optimizer", "data"):  # fmt: skip
        assert report["regions"][region]["cpu_time_ms_per_step"] > 0, region
    assert report["operators"] and report["recommendations"] and report["step_time_ms"] > 0
    assert list((tmp_path / "runs" / "profile").glob("*.pt.trace.json"))


def test_sigterm_checkpoints_and_resume_continues(sim_data: Path, tmp_path: Path) -> None:
    """The server stops a job with SIGTERM: the step finishes, a checkpoint is written, --resume auto goes on."""
    args = [
        "train",
        "--config",
        str(TINY),
        "--data",
        str(sim_data),
        "--out",
        str(tmp_path),
        "max_steps=100000",
    ]
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "vrcap"), *args], stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "loss/total" not in (
        metrics.read_text() if metrics.exists() else ""
    ):
        time.sleep(0.2)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    last = json.loads(metrics.read_text().splitlines()[-1])
    assert last["event"] == "stopped" and last["signal"] == "SIGTERM"
    stopped_at = last["step"]
    assert f"stopped at step {stopped_at} (SIGTERM)" in err
    assert (tmp_path / "checkpoints" / f"ckpt-{stopped_at:08d}.pt").is_file()
    result = run_vrcap(*args, "--resume", "auto", "--max-steps", str(stopped_at + 2))
    assert result.returncode == 0, result.stderr
    assert f"at step {stopped_at}" in result.stderr and f"trained to step {stopped_at + 2}" in result.stderr
