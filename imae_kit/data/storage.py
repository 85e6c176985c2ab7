"""Where data sets live on disk, and how files get there safely.

The data root (one directory for every data set) is, first match wins:

1. the ``root`` parameter of a recipe's [data] table (or ``--root`` on ``imae-kit data``);
2. the environment variable ``IMAE_KIT_DATA``;
3. ``$XDG_CACHE_HOME/imae-kit``;
4. ``~/.cache/imae-kit``.

Every file is written atomically: into a temporary file in the same directory, flushed and
fsync'ed, then renamed over the final name (and the directory fsync'ed). A crash or an exception
mid-write leaves at most a ``.<name>.*.tmp`` file, which the next provisioning removes; the final
name only ever holds a complete file. Provisioning holds an exclusive lock on ``<dir>/.lock`` so two
runs started together do not both render or download the same data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from imae_kit.atomic import atomic_file, remove_stale_temporaries
from imae_kit.errors import DataError, DiskWriteError, disk_cause

DATA_ENV_VAR = "IMAE_KIT_DATA"
_CHUNK = 1 << 22  # 4 MiB


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else $IMAE_KIT_DATA, else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative value
        return Path(xdg) / "imae-kit"
    return Path.home() / ".cache" / "imae-kit"


def root_source(root: str | os.PathLike | None = None) -> str:
    """Which rule chose the data root (for ``imae-kit data list``)."""
    if root is not None and str(root) != "":
        return "--root / recipe 'root'"
    if os.environ.get(DATA_ENV_VAR):
        return f"${DATA_ENV_VAR}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return "$XDG_CACHE_HOME/imae-kit"
    return "~/.cache/imae-kit"


def make_dir(path: Path) -> Path:
    """Create ``path`` (and parents), turning a permission problem into a DataError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the data directory {path}: {exc.strerror or exc}; "
            f"choose another with ${DATA_ENV_VAR}=DIR or the recipe's data 'root'"
        ) from exc
    return path


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """``imae_kit.atomic.atomic_file`` in the data root: creates the folder; a folder that cannot be
    written (permissions, disk full) is a DataError saying how to choose another data root."""
    path = Path(path)
    make_dir(path.parent)
    try:
        with atomic_file(path) as handle:
            yield handle
    except (OSError, DiskWriteError) as exc:
        reason = exc.reason if isinstance(exc, DiskWriteError) else exc.strerror or exc
        raise DataError(f"cannot write {path}: {reason}; nothing was left behind; "
                        f"free space or choose another data root with ${DATA_ENV_VAR}=DIR") from exc


@contextlib.contextmanager
def provisioning_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``directory/.lock`` (waits for another provisioner)."""
    make_dir(directory)
    lock_path = directory / ".lock"
    try:
        handle = open(lock_path, "a+b")
    except OSError as exc:
        if disk_cause(exc) is None:
            raise
        raise DataError(f"cannot write {lock_path}: {exc.strerror or exc}; free space, fix the permissions or "
                        f"choose another data root with ${DATA_ENV_VAR}=DIR") from exc
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            remove_stale_temporaries(directory)
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def human_size(n: int) -> str:
    """Bytes as a short human string (binary units)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable
