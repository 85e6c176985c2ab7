"""Atomic file writes: a temp file beside the target, flushed, fsynced and renamed over it.

A kill at any instant leaves either the old file or the new one, never a mix; what remains of a cut-short
write is a hidden ``.NAME.XXXX.tmp`` beside the target, which the next writer may delete. A write that the
disk refuses (full, read-only, quota) raises ``DiskWriteError`` naming the file and the cause, and leaves the
old file as it was. ``keep_previous`` keeps the file being replaced under a second name (a checkpoint and
the one before it), so that at every instant the target holds a complete file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterator

from imae_kit.errors import DiskWriteError, disk_cause, refused_writes

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
def atomic_file(path: str | os.PathLike, *, keep_previous: str | os.PathLike | None = None) -> Iterator[BinaryIO]:
    """Yield a binary handle on a temp file beside ``path``; on a clean exit fsync it and rename it to
    ``path``; on any exception (KeyboardInterrupt included) delete it and re-raise. The directory must
    exist. A write the disk refuses (ENOSPC, EACCES, EROFS, EDQUOT, EIO, ...: also when torch.save turns it
    into a RuntimeError) becomes ``DiskWriteError(path, cause)``; other exceptions propagate unchanged.

    ``keep_previous``: before the rename, the file at ``path`` (if any) becomes ``keep_previous`` (a hard
    link renamed over it, so ``path`` itself is never missing; a rename where links are not supported)."""
    path = Path(path)
    tmp = temp_path_for(path)
    with refused_writes(path):
        # os.open with mode 0o666 lets the umask decide the final permissions (mkstemp would force 0600)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None:
            _keep_previous(path, Path(keep_previous))
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = disk_cause(exc)
        if cause is None or isinstance(exc, DiskWriteError):
            raise
        raise DiskWriteError(path, cause) from exc
    fsync_dir(path.parent)


def _keep_previous(path: Path, previous: Path) -> None:
    """Make the current ``path`` (if any) ``previous``, leaving ``path`` in place until it is replaced."""
    if not path.exists():
        return
    # A kill between this rotation and the rename that follows it leaves ``path`` and ``previous`` as two
    # names of one file. rename(2) between two names of one file succeeds and does nothing, so linking and
    # renaming would leave the temp link behind: ``previous`` already holds the file being replaced.
    with contextlib.suppress(OSError):
        if os.path.samefile(path, previous):
            return
    link = temp_path_for(previous)
    try:
        os.link(path, link)
    except OSError as exc:
        if disk_cause(exc) is not None and exc.errno != errno.EPERM:
            raise
        os.replace(path, previous)  # no hard links here (EPERM, EXDEV, ENOTSUP): a plain rename
        return
    try:
        os.replace(link, previous)
    except BaseException:
        with contextlib.suppress(OSError):
            link.unlink()
        raise


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
