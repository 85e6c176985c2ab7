"""Progress on long work: one home for the rich bars (training, evaluation, data provisioning).

Everything goes to stderr, so stdout stays clean for results. On a terminal these are rich's live bars;
on anything else (a log file under SLURM or nohup, a pipe) a live bar would print nothing until it ends
and then one cut-off line, so the same calls print plain, complete lines instead (``PlainProgress``).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

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
    TaskID,
    TimeRemainingColumn,
)
from rich.text import Text

PLAIN_FRACTION = 0.1  # off a terminal, a task without line fields prints a line every tenth of its total
PLAIN_INTERVAL = 60.0  # ... and at least every minute while it advances


def console() -> Console:
    """The console progress and status go to (stderr)."""
    return Console(stderr=True)


def is_terminal(out: Console) -> bool:
    """Whether ``out`` shows live bars: a terminal (rich's ``Console.is_terminal``) or a notebook."""
    return out.is_terminal or out.is_jupyter


def progress(*, enabled: bool = True, transfer: bool = False, transient: bool = False, counts: bool = False,
             middle: Sequence[ProgressColumn] = (), tail: Sequence[ProgressColumn] = (),
             bar_width: int | None = 40, out: Console | None = None, line_on: str | None = None,
             rate: tuple[str, float] | None = None) -> Progress:
    """A rich bar: description, bar, percentage (``counts``: done/total), ``middle`` columns, [bytes,] elapsed,
    eta, ``tail`` columns. ``transfer`` adds byte counts; ``enabled=False`` shows nothing; ``transient`` erases
    it when done. Off a terminal, a ``PlainProgress`` with the same columns: a line each time the field
    ``line_on`` is updated (else every tenth of the way), with ``rate = (unit, per_step)`` as "N unit"."""
    out = out or console()
    if enabled and not is_terminal(out):
        return PlainProgress(middle=middle, tail=tail, counts=counts, transfer=transfer, console=out,
                             line_on=line_on, rate=rate)
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=bar_width),
                                     MofNCompleteColumn() if counts else TaskProgressColumn(), *middle]
    if transfer:
        columns.append(DownloadColumn())
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), *tail]
    return Progress(*columns, console=out, disable=not enabled, transient=transient)


def _clock(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=max(0, int(seconds))))


class PlainProgress(Progress):
    """rich's Progress (tasks, speed, time remaining) with no live display: each report is one plain line,

        train  120/300 (40%)  epoch 2  elapsed 0:00:12  eta 0:00:18  4,900 images/s  loss 123.4 | ...

    printed whole (never cut to the width) each time ``line_on`` is updated, or, without ``line_on``, every
    ``PLAIN_FRACTION`` of the total, at least every ``PLAIN_INTERVAL`` seconds while it advances, and at the end.
    """

    def __init__(self, *, middle: Sequence[ProgressColumn] = (), tail: Sequence[ProgressColumn] = (),
                 counts: bool = False, transfer: bool = False, console: Console | None = None,
                 line_on: str | None = None, rate: tuple[str, float] | None = None):
        super().__init__(console=console, disable=True)
        self._middle, self._tail = list(middle), list(tail)
        self._counts, self._transfer = counts, transfer
        self._download = DownloadColumn()
        self._line_on, self._rate = line_on, rate
        self._marks: dict[TaskID, tuple[float, float]] = {}  # task -> (fraction, time) of its last line
        self._line_lock = threading.Lock()

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                   **fields)
        with self._line_lock:
            self._marks[task_id] = (self._fraction(task_id), time.monotonic())
        return task_id

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        super().update(task_id, total=total, completed=completed, advance=advance, description=description,
                       visible=visible, **fields)
        self._report(task_id, self._line_on is not None and self._line_on in fields)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id, False)

    def _fraction(self, task_id: TaskID) -> float:
        task = self._tasks[task_id]
        return 0.0 if not task.total else min(1.0, task.completed / task.total)

    def _report(self, task_id: TaskID, asked: bool) -> None:
        with self._line_lock:
            last_fraction, last_time = self._marks[task_id]
            if self._line_on is None and not asked:
                fraction, now = self._fraction(task_id), time.monotonic()
                done = fraction >= 1.0 > last_fraction
                due = fraction >= last_fraction + PLAIN_FRACTION or (fraction > last_fraction
                                                                     and now - last_time >= PLAIN_INTERVAL)
                if not (done or due):
                    return
            elif not asked:
                return
            self._marks[task_id] = (self._fraction(task_id), time.monotonic())
            self.console.print(self.line(task_id), markup=False, highlight=False, soft_wrap=True)

    def line(self, task_id: TaskID) -> str:
        """The task's state as one plain line."""
        task = self._tasks[task_id]
        done = f"{task.completed:,.0f}" if task.total is None else (
            f"{task.completed:,.0f}/{task.total:,.0f} ({self._fraction(task_id):.0%})" if self._counts
            else f"{self._fraction(task_id):.0%}")
        parts = [task.description, done, *(self._text(c, task) for c in self._middle)]
        if self._transfer:
            parts.append(self._text(self._download, task))
        parts += [f"elapsed {_clock(task.elapsed)}", f"eta {_clock(task.time_remaining)}"]
        if self._rate is not None and task.speed:
            unit, per_step = self._rate
            parts.append(f"{task.speed * per_step:,.0f} {unit}")
        parts += [self._text(c, task) for c in self._tail]
        return "  ".join(p for p in parts if p)

    @staticmethod
    def _text(column: ProgressColumn, task: Any) -> str:
        rendered = column.render(task)
        return rendered.plain if isinstance(rendered, Text) else str(rendered)


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
    """A spinner on stderr while a step without a known length runs (off a terminal: a line as it starts and
    one as it ends)."""
    if quiet:
        yield
        return
    out = console()
    if not is_terminal(out):
        start = time.monotonic()
        out.print(f"{message} ...", markup=False, highlight=False, soft_wrap=True)
        yield
        out.print(f"{message}: done in {time.monotonic() - start:.1f} s", markup=False, highlight=False,
                  soft_wrap=True)
        return
    with out.status(message):
        yield
