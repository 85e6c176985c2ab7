"""Tables on the terminal that never cut a name or a value, whatever the width (a pipe, a narrow terminal).

Name and number columns never wrap; descriptive columns fold onto more lines. Where the console is too
narrow for that (the names alone fill it), the same rows print as a plain listing instead:

    total_correlation
      sense: minimize
      what it is: KL(p(z) || prod_k p(z_k)) ...
"""

from __future__ import annotations

from typing import Literal, Sequence

import attrs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

Kind = Literal["name", "number", "text"]
TEXT_MIN_WIDTH = 12  # below this a folded column is harder to read than a listing


@attrs.frozen
class Column:
    """A column: ``name`` (a name or a short word: never wrapped; bold in the first column), ``number`` (never
    wrapped, right-aligned) or ``text`` (folds onto more lines)."""

    header: str
    kind: Kind = "text"


def needed_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """The narrowest console on which the table keeps every name and number whole and each text column at
    least ``TEXT_MIN_WIDTH`` wide (cell padding and borders included)."""
    width = len(columns) + 1  # the vertical borders
    for i, column in enumerate(columns):
        if column.kind == "text":
            width += TEXT_MIN_WIDTH + 2
        else:
            cells = [column.header, *(row[i] for row in rows if i < len(row))]
            width += max(len(line) for cell in cells for line in (cell.splitlines() or [""])) + 2
    return width


def print_table(out: Console, columns: Sequence[Column], rows: Sequence[Sequence[str]], *, title: str | None = None,
                sections: Sequence[Sequence[Sequence[str]]] = (), show_lines: bool = False) -> None:
    """Print ``rows`` (plain strings, no markup) under ``columns``, then each of ``sections`` after a rule: a
    rich table when ``out`` is wide enough for ``needed_width``, else a plain listing (one block per row)."""
    every = [*rows, *(row for section in sections for row in section)]
    if needed_width(columns, every) > out.width:
        _print_listing(out, columns, [list(rows), *map(list, sections)], title)
        return
    table = Table(title=escape(title) if title else None, show_lines=show_lines)
    for i, column in enumerate(columns):
        if column.kind == "name":
            table.add_column(escape(column.header), style="bold" if i == 0 else None, no_wrap=True)
        elif column.kind == "number":
            table.add_column(escape(column.header), justify="right", no_wrap=True)
        else:
            table.add_column(escape(column.header), overflow="fold")
    for index, block in enumerate([rows, *sections]):
        if index and block:
            table.add_section()
        for row in block:
            table.add_row(*(escape(cell) for cell in row))
    out.print(table)


def _print_listing(out: Console, columns: Sequence[Column], blocks: list[list[Sequence[str]]],
                   title: str | None) -> None:
    def say(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    if title:
        say(title)
    for index, block in enumerate(blocks):
        if index and block:
            say("")
        for row in block:
            say(row[0] if row else "")
            for column, cell in zip(columns[1:], row[1:]):
                if cell != "":
                    say(f"  {column.header}: {' '.join(cell.split())}")
