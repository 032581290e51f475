"""What `vrcap infer` says about a --checkpoint or --session it cannot use, before torch gets to say it worse.

torch's own messages for a wrong file are five lines about ``weights_only``; a folder, a checkpoint's JSON
sidecar or a missing ``final.pt`` each have a plainer explanation and a fix, named here in one line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from training.errors import CheckpointError
from vrcap.errors import UsageError


def _checkpoints_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ckpt-*.pt")) if folder.is_dir() else []


def check_checkpoint_path(path: Path) -> None:
    """Raise a one-line error naming the fix when ``path`` cannot be a checkpoint file."""
    if path.is_dir():
        found = _checkpoints_in(path)
        pick = path / "final.pt" if (path / "final.pt").is_file() else (path / found[-1] if found else None)
        hint = f"; e.g. --checkpoint {pick}" if pick else "; it holds no final.pt or ckpt-*.pt"
        raise UsageError(f"--checkpoint {path} is a folder, not a checkpoint file{hint}")
    if not path.exists():
        found = _checkpoints_in(path.parent)
        if found:
            raise UsageError(
                f"--checkpoint {path} does not exist (final.pt is written when training finishes); "
                f"{path.parent} has {', '.join(found[-3:])}: pass one of them"
            )
        raise UsageError(f"--checkpoint {path} does not exist")
    if path.suffix == ".json":
        raise UsageError(
            f"--checkpoint {path} is a checkpoint's JSON sidecar (size and sha256), not the checkpoint; "
            f"pass {path.with_suffix('.pt')}"
        )
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(
            f"--checkpoint {path} is not a vrcap checkpoint (not a torch.save file); "
            "pass a ckpt-*.pt or final.pt written by `vrcap train`"
        )


def session_refused_hint(session: Path, problem: str) -> str:
    """infer converts one session as it is: the fix is a repair, not replay's --allow-invalid."""
    return (
        f"session {session} failed validation ({problem}); repair it with `vrcap validate --fix {session}`, "
        "then run infer again"
    )
