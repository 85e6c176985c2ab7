"""Progress on long work: one home for the rich bars (training, evaluation, data provisioning).

Everything goes to stderr, so stdout stays clean for results.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def console() -> Console:
    """The console progress and status go to (stderr)."""
    return Console(stderr=True)


def progress(*, enabled: bool = True, transfer: bool = False, transient: bool = False, counts: bool = False,
             middle: Sequence[ProgressColumn] = (), tail: Sequence[ProgressColumn] = (),
             bar_width: int | None = 40, out: Console | None = None) -> Progress:
    """A rich bar: description, bar, percentage (``counts``: done/total), ``middle`` columns, [bytes,] elapsed,
    eta, ``tail`` columns. ``transfer`` adds byte counts; ``enabled=False`` shows nothing; ``transient`` erases
    it when done."""
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=bar_width),
                                     MofNCompleteColumn() if counts else TaskProgressColumn(), *middle]
    if transfer:
        columns.append(DownloadColumn())
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), *tail]
    return Progress(*columns, console=out or console(), disable=not enabled, transient=transient)


@contextmanager
def progress_callback(description: str, total: float, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transient bar over ``total`` units, yielding an ``advance(n)`` callback (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    with progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def status(message: str, *, quiet: bool = False) -> Iterator[None]:
    """A spinner on stderr while a step without a known length runs."""
    if quiet:
        yield
        return
    with console().status(message):
        yield
