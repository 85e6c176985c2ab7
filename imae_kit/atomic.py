"""Atomic file writes: a temp file beside the target, flushed, fsynced and renamed over it.

A kill at any instant leaves either the old file or the new one, never a mix; what remains of a cut-short
write is a hidden ``.NAME.XXXX.tmp`` beside the target, which the next writer may delete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A fresh hidden temp name beside ``path``: ``.NAME.<random>.tmp``."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it is durable (ignored where the OS does not allow it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temp file beside ``path``; on a clean exit fsync it and rename it to
    ``path``; on any exception (KeyboardInterrupt included) delete it and re-raise. The directory must
    exist; an OSError opening the temp file propagates unchanged."""
    path = Path(path)
    tmp = temp_path_for(path)
    # os.open with mode 0o666 lets the umask decide the final permissions (mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files a killed writer left in ``directory`` (hold the directory's lock)."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed
