"""Ctrl-C and SIGTERM (what batch schedulers send before a kill) stop training between steps."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator


_STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopFlag:
    """Ctrl-C or SIGTERM during training sets a flag checked between steps; a second one interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """How the stop was asked for: 'Ctrl-C' or 'SIGTERM'."""
        return _STOP_SIGNALS.get(self.signum, f"signal {self.signum}")

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum


@contextmanager
def graceful_stop(flag: StopFlag) -> Iterator[None]:
    """Route SIGINT (Ctrl-C) and SIGTERM (what batch schedulers send before a kill) to ``flag``."""
    previous: dict[int, Any] = {}
    try:
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, flag.handler)
    except ValueError:  # not in the main thread: leave the handlers as they are
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
