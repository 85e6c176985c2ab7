"""Who runs a point: advisory locks that claim a point, and the threads each of several jobs gets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from imae_kit.runs import LOCK_FILE


def default_threads(jobs: int) -> int:
    """Torch threads for each of ``jobs`` points run at once: this process's cores / jobs, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


@contextlib.contextmanager
def flock(path: Path) -> Iterator[bool]:
    """Try to hold an exclusive advisory lock on ``path`` (created if missing) for the block; yields whether
    it was obtained (without waiting). The OS releases it if the process dies. No fcntl (Windows): True."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


def run_lock_free(run_dir: Path) -> bool:
    """Whether no process holds the run directory's own lock (RunDir.locked) right now."""
    if not (run_dir / LOCK_FILE).is_file():
        return True
    with flock(run_dir / LOCK_FILE) as free:
        return free
