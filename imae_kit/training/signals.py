"""Ctrl-C and SIGTERM (what batch schedulers send before a kill) stop training between steps."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from typing import Any, Iterator


_STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


# A second signal this soon after the first is the same request passed on by a launcher (torchrun relays
# the terminal's Ctrl-C or the scheduler's SIGTERM to processes that already got it), not a second one.
RELAYED_WITHIN = 2.0


class StopFlag:
    """Ctrl-C or SIGTERM during training sets a flag checked between steps; a second one interrupts at once
    (unless it comes within RELAYED_WITHIN seconds of the first: a launcher relaying the same stop)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first_at = 0.0

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """How the stop was asked for: 'Ctrl-C' or 'SIGTERM'."""
        return _STOP_SIGNALS.get(self.signum, f"signal {self.signum}")

    def handler(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            if time.monotonic() - self._first_at < RELAYED_WITHIN:
                return
            raise KeyboardInterrupt
        self.signum = signum
        self._first_at = time.monotonic()


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
