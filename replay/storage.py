"""Sessions and tensor folders anywhere fsspec reaches: a local path, ``file://``, ``s3://``, ``gs://``, ...

Why stage instead of reading remote files in place: the session reader memory-maps segments and the shard writer
appends to spill files, both of which need a local file. So a remote session is copied to a local temp folder
(one session at a time per worker: disk, not memory), converted, and removed; a shard is built locally and
uploaded in one put. The manifest is written last, in one put too: an object store makes a single PUT visible
whole or not at all, which is the atomicity a rename gives on a local disk.

Credentials are never vrcap's business: the storage library reads its standard environment and config
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``~/.aws/config``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vrcap.errors import UsageError
from vrcap.fsutil import atomic_write_bytes

SESSION_FILE = "session.json"


def is_url(path: str | Path) -> bool:
    """True for ``scheme://...`` (``file://`` included); plain paths stay on the local code path."""
    return isinstance(path, str) and "://" in path


def is_remote(path: str | Path) -> bool:
    """A URL other than ``file://``: staged and uploaded; ``file://`` is a local path in other clothes."""
    return is_url(path) and not str(path).startswith("file://")


def local_path(path: str | Path) -> Path:
    return Path(str(path).removeprefix("file://"))


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it); a missing backend is one line naming the package to install."""
    try:
        from fsspec.core import url_to_fs

        return url_to_fs(url)
    except ImportError as exc:
        raise UsageError(
            f"{url}: no filesystem for this URL ({exc}); install its fsspec backend, e.g. "
            "`pip install 'vrcap[storage]'` for s3:// (s3fs) or gcsfs for gs://"
        ) from exc
    except ValueError as exc:
        raise UsageError(f"{url}: not a storage URL fsspec knows ({exc})") from exc


def expand_session_urls(url: str) -> list[str]:
    """A session URL (it holds session.json) or a folder of them, as session URLs sorted by name."""
    fs, root = filesystem(url)
    scheme = url.split("://", 1)[0]
    root = root.rstrip("/")
    try:
        if fs.isfile(f"{root}/{SESSION_FILE}"):
            return [f"{scheme}://{root}"]
        found = sorted(p.rsplit("/", 2)[-2] for p in fs.glob(f"{root}/*/{SESSION_FILE}"))
    except OSError as exc:
        raise UsageError(
            f"{url}: cannot be listed ({exc}); check the URL and the storage credentials"
        ) from exc
    if not found:
        raise UsageError(f"{url}: no session there (no {SESSION_FILE}, none in its sub-folders)")
    return [f"{scheme}://{root}/{name}" for name in found]


def session_name(source: str | Path) -> str:
    return str(source).rstrip("/").rsplit("/", 1)[-1]


def remote_fingerprint(url: str) -> str:
    """Like ``convert_session.fingerprint``, from what the store says: session.json's bytes and each segment's
    name, size and ETag (or modification time), so a re-run skips an unchanged remote session unread."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    h = hashlib.sha256()
    h.update(fs.cat_file(f"{root}/{SESSION_FILE}"))
    for info in sorted(fs.ls(root, detail=True), key=lambda i: i["name"]):
        name = info["name"].rsplit("/", 1)[-1]
        if name.startswith("packets-") and name.endswith(".vrc"):
            tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
            h.update(f"{name}:{info.get('size')}:{tag};".encode())
    return h.hexdigest()[:24]


def stage_session(url: str, into: Path) -> Path:
    """Copy a remote session folder into ``into/<name>``; returns the local folder."""
    fs, root = filesystem(url)
    local = into / session_name(url)
    local.mkdir(parents=True)
    for info in fs.ls(root.rstrip("/"), detail=True):
        if info.get("type") == "file":
            fs.get_file(info["name"], str(local / info["name"].rsplit("/", 1)[-1]))
    return local


class TensorStore:
    """The ``--to-tensors`` folder: a local path or a URL. Shards are addressed by their manifest path
    (``shards/<session>.safetensors``)."""

    def __init__(self, out: str | Path) -> None:
        self.spec = str(out)
        self.remote = is_url(out) and not str(out).startswith("file://")
        if self.remote:
            self.fs, self.root = filesystem(str(out))
            self.root = self.root.rstrip("/")
            self.local: Path | None = None
        else:
            self.local = Path(str(out).removeprefix("file://"))
            if self.local.exists() and not self.local.is_dir():
                raise UsageError(f"--to-tensors {out} is a file; give a folder (it is created if missing)")

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.remote else str(self.local / rel)  # type: ignore[operator]

    def size(self, rel: str) -> int | None:
        """Size of a file in the store, None when it is not there."""
        try:
            if self.remote:
                return int(self.fs.info(self.path(rel))["size"])
            return os.stat(self.path(rel)).st_size
        except (FileNotFoundError, OSError):
            return None

    def read_json(self, rel: str) -> Any:
        data = self.fs.cat_file(self.path(rel)) if self.remote else Path(self.path(rel)).read_bytes()
        return json.loads(data)

    def write_atomic(self, rel: str, data: bytes, durable: bool = True) -> None:
        """The whole file or the previous one, never a part: rename locally, one PUT on an object store.

        ``durable=False`` skips the fsyncs (a task's entry: if a crash loses it, the session is converted again)."""
        if self.remote:
            self.fs.pipe_file(self.path(rel), data)
        elif durable:
            atomic_write_bytes(Path(self.path(rel)), data)
        else:
            path = Path(self.path(rel))
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def put(self, local: Path, rel: str) -> None:
        """Upload a finished local file (a shard) to ``rel``."""
        self.fs.put_file(str(local), self.path(rel))

    def local_dir(self, rel: str) -> Path:
        """Where a shard is built: in place locally (renamed into ``rel``), in a temp folder for a remote store."""
        if self.remote:
            return Path(tempfile.mkdtemp(prefix="vrcap-shard-"))
        folder = Path(self.path(rel))
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def default_cache_dir(url: str) -> Path:
    """``$XDG_CACHE_HOME/vrcap/tensors/<hash of the URL>`` (``~/.cache`` without it)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vrcap" / "tensors" / hashlib.sha256(url.encode()).hexdigest()[:16]


def fetch_cached(url: str, rel: str, size: int, cache_dir: Path) -> Path:
    """The local copy of ``url/rel``, downloaded (temp file + rename) unless a copy of ``size`` bytes is there."""
    local = cache_dir / rel
    if local.is_file() and local.stat().st_size == size:
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    store = TensorStore(url)
    tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
    try:
        store.fs.get_file(store.path(rel), str(tmp))
        os.replace(tmp, local)
    finally:
        if tmp.exists():
            tmp.unlink()
    return local
