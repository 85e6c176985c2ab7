"""Errors a user can cause. The CLI prints them in one or two lines and exits with status 2."""

from __future__ import annotations

import contextlib
import errno
from typing import Iterator


class ImaeKitError(Exception):
    """Base class: a mistake the user can fix (recipe, data path, plugin, run directory)."""

    exit_code = 2


class ImaeKitWarning(UserWarning):
    """Something the user should know that does not stop the program (the CLI prints it as one line)."""


class RecipeError(ImaeKitError):
    """A recipe file that cannot be read, or that names something wrong."""


class PluginError(ImaeKitError):
    """A plugin file that is missing, raises on import, or registers something invalid."""


class DataError(ImaeKitError):
    """A data set that is missing, damaged or of the wrong shape."""


class RunError(ImaeKitError):
    """A run directory that cannot be created, resumed or read."""


class DivergenceError(ImaeKitError):
    """Training produced a non-finite loss or gradient."""


class DiskWriteError(ImaeKitError):
    """A file that could not be written: the disk is full, the folder is read-only, a quota is reached.

    Carries the ``path``, the OSError ``cause`` and what was being written; ``advice`` says what to do."""

    DEFAULT_ADVICE = "free space (or fix the permissions), then run the same command again"

    def __init__(self, path: object, cause: OSError, advice: str = DEFAULT_ADVICE, verb: str = "write"):
        self.path = path
        self.cause = cause
        self.advice = advice
        self.verb = verb
        super().__init__(self.describe() + (f"; {advice}" if advice else ""))

    @property
    def reason(self) -> str:
        """The cause in words: ``no space left on device (ENOSPC)``."""
        name = errno.errorcode.get(self.cause.errno or 0)
        text = (self.cause.strerror or str(self.cause) or type(self.cause).__name__).rstrip(".")
        text = text[:1].lower() + text[1:]
        return f"{text} ({name})" if name else text

    def describe(self) -> str:
        """``cannot write PATH: REASON``."""
        return f"cannot {self.verb} {self.path}: {self.reason}"

    def advise(self, advice: str) -> "DiskWriteError":
        """The same error with ``advice`` (what is intact, how to go on) in place of the generic one."""
        return DiskWriteError(self.path, self.cause, advice, self.verb)


WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})  # only a write gets these
DISK_ERRNOS = WRITE_ERRNOS | {errno.EACCES, errno.EPERM, errno.EIO}


def disk_cause(exc: BaseException) -> OSError | None:
    """The OSError of a failed write behind ``exc``, following ``__cause__`` and ``__context__`` (torch.save
    turns an ENOSPC from the file into a RuntimeError raised while handling it); None if there is none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def refused_writes(path: object, advice: str = DiskWriteError.DEFAULT_ADVICE) -> Iterator[None]:
    """Within the block, an OSError that the disk caused (``disk_cause``) becomes ``DiskWriteError(path, ...)``;
    any other exception propagates unchanged."""
    try:
        yield
    except OSError as exc:
        if disk_cause(exc) is None:
            raise
        raise DiskWriteError(path, exc, advice) from exc
