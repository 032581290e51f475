"""Sessions and tensors on object storage, for real: a moto S3 server on loopback, `vrcap replay` as a user runs it,
credentials and endpoint only from the standard AWS environment. Every shard byte equals a local run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_vrcap
from tests.replay.conftest import free_port, write_sim_session

BUCKET = "vrcap-test"
SESSIONS = ("kitchen-1", "kitchen-2")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s3-sessions")
    for i, name in enumerate(SESSIONS):
        write_sim_session(
            root / name, 1.0 + i, cameras=("left",), hands=False, camera_width=320, camera_height=240
        )
    return root


@pytest.fixture(scope="module")
def s3(s3_env: dict[str, str], sessions: Path) -> object:
    import s3fs

    fs = s3fs.S3FileSystem()  # endpoint and credentials from the environment, as for a user
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    fs.put(str(sessions) + "/", f"{BUCKET}/sessions/", recursive=True)
    return fs


def _entries(manifest: dict) -> dict:
    drop = ("source", "convert_s", "fingerprint")
    return {n: {k: v for k, v in e.items() if k not in drop} for n, e in manifest["sessions"].items()}


def test_s3_sessions_to_s3_tensors_equal_a_local_run(
    s3: object, s3_env: dict[str, str], sessions: Path, tmp_path: Path
) -> None:
    fs = s3
    remote = run_vrcap(
        "replay", f"s3://{BUCKET}/sessions", "--to-tensors", f"s3://{BUCKET}/tensors", env=s3_env
    )
    assert remote.returncode == 0, remote.stderr
    local = run_vrcap("replay", str(sessions), "--to-tensors", str(tmp_path / "t"))
    assert local.returncode == 0, local.stderr
    for name in SESSIONS:
        got = fs.cat_file(f"{BUCKET}/tensors/shards/{name}.safetensors")  # type: ignore[attr-defined]
        want = (tmp_path / "t" / "shards" / f"{name}.safetensors").read_bytes()
        assert len(got) > 100_000 and got == want, name
    manifest = json.loads(fs.cat_file(f"{BUCKET}/tensors/manifest.json"))  # type: ignore[attr-defined]
    local_manifest = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert _entries(manifest) == _entries(local_manifest)
    assert manifest["sessions"]["kitchen-1"]["source"] == f"s3://{BUCKET}/sessions/kitchen-1"
    assert manifest["normalization"] == local_manifest["normalization"]
    # nothing but the shards, their entries and the manifest is left behind (no spill or temp objects)
    listed = sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"{BUCKET}/tensors"))  # type: ignore[attr-defined]
    names = [f"{n}.{ext}" for n in SESSIONS for ext in ("entry.json", "safetensors")]
    assert listed == [*names, "manifest.json", "stats.json"]

    again = run_vrcap(
        "replay", f"s3://{BUCKET}/sessions", "--to-tensors", f"s3://{BUCKET}/tensors", env=s3_env
    )
    assert again.returncode == 0 and "2 session(s) already converted" in again.stderr, again.stderr


def test_a_missing_bucket_is_one_line_and_exit_2(s3: object, s3_env: dict[str, str], tmp_path: Path) -> None:
    done = run_vrcap(
        "replay", "s3://no-such-bucket/sessions", "--to-tensors", str(tmp_path / "t"), env=s3_env
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "s3://no-such-bucket/sessions" in err


def test_no_credentials_is_one_line_naming_where_to_set_them(
    s3: object, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """A user without AWS credentials got "internal error: NoCredentialsError ... this is a bug" (exit 70)."""
    nowhere = str(tmp_path / "no-such-file")
    env = {
        **s3_env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip
    done = run_vrcap("replay", f"s3://{BUCKET}/sessions", "--to-tensors", str(tmp_path / "t"), env=env)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("vrcap replay: error: the object store needs credentials and found none"), err
    assert "AWS_ACCESS_KEY_ID" in err and "internal error" not in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("direction", ["sessions", "tensors"])
def test_an_endpoint_that_does_not_answer_is_one_line(
    s3_env: dict[str, str], sessions: Path, tmp_path: Path, direction: str
) -> None:
    """AWS_ENDPOINT_URL at a closed port, reading sessions or writing tensors: exit 2, not "internal error"."""
    env = {**s3_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}
    args = (
        (f"s3://{BUCKET}/sessions", "--to-tensors", str(tmp_path / "t"))
        if direction == "sessions"
        else (str(sessions / SESSIONS[0]), "--to-tensors", f"s3://{BUCKET}/t")
    )
    done = run_vrcap("replay", *args, env=env)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("vrcap replay: error: the object store does not answer"), err
    assert "AWS_ENDPOINT_URL" in err


def test_the_dataset_reads_an_s3_tensor_url_like_a_local_folder(
    s3: object, s3_env: dict[str, str], sessions: Path, tmp_path: Path
) -> None:
    import numpy as np

    from replay.config import load_replay_config
    from replay.convert import convert_sessions
    from replay.dataset import SessionDataset

    url = f"s3://{BUCKET}/tensors-ds"
    config = load_replay_config(None, ["split.gap_steps=0"])  # two short sessions: time blocks, no gap
    convert_sessions([str(sessions)], url, config, progress=False, log=lambda m: None)
    convert_sessions([str(sessions)], tmp_path / "t", config, progress=False, log=lambda m: None)
    remote = SessionDataset(
        url, window=16, modalities=["pose", "audio", "camera"], cache_dir=tmp_path / "cache"
    )
    local = SessionDataset(tmp_path / "t", window=16, modalities=["pose", "audio", "camera"])
    assert len(remote) == len(local) > 0
    for i in range(len(local)):
        a, b = remote[i], local[i]
        assert sorted(a) == sorted(b)
        for k, v in b.items():
            assert np.array_equal(np.asarray(a[k]), np.asarray(v)), k
    assert sorted(p.name for p in (tmp_path / "cache" / "shards").iterdir()) == [
        "kitchen-1.safetensors",
        "kitchen-2.safetensors",
    ]
