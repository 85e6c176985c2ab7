"""A sweep's results: the table (csv, Markdown) of every point's headline numbers and the band figures."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import attrs

from imae_kit import figures
from imae_kit.errors import RunError
from imae_kit.params import is_number
from imae_kit.recipe import parse_override_value
from imae_kit.report import markdown_cell
from imae_kit.runs import atomic_write_text
from imae_kit.sweep.grid import SEED_PATH, GridAxis
from imae_kit.sweep.runner import TABLE_CSV, TABLE_MD, Sweep


BAND = (0.1, 0.9)  # the paper's 80% intervals

# short console headers for the numbers PAPER.md plots (the files keep the full names)
SHORT_NAMES = {
    "accuracy of y (best matching)": "acc(y)",
    "I(x;y) nats": "I(x;y)",
    "I(x;z) nats (sum over k of I(x;z_k))": "I(x;z)",
    "TC(z) nats": "TC(z)",
    "reconstruction NLL nats/image": "NLL",
    "MIG z (sampled, Chen et al.)": "MIG z",
    "MIG z and y (sampled)": "MIG z,y",
    "FactorVAE score (Kim & Mnih)": "FactorVAE",
    "DCI disentanglement": "DCI D",
    "SAP score (Kumar et al.)": "SAP",
    "modularity (Ridgeway & Mozer)": "modularity",
}


def metric_columns(rows: Iterable[dict[str, Any]], skip: Iterable[str]) -> list[str]:
    """The numeric columns of ``rows`` (in first-seen order), other than those in ``skip``."""
    skip = set(skip) | {"point", "run", "status"}
    cols: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in skip and key not in cols and is_number(value):
                cols.append(key)
    return cols


def write_table(sweep: Sweep, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """sweep.csv (every column) and sweep.md (a Markdown table) in the sweep directory."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = sweep.path / TABLE_CSV
    atomic_write_text(csv_path, buf.getvalue())
    shown = [c for c in columns if c != "run"]
    budget = f"{sweep.spec.steps} steps" if sweep.spec.steps else "the recipe's"
    lines = [f"# Sweep {sweep.name()}", "", f"Recipe `{sweep.spec.recipe}`, fixed overrides "
             f"{list(sweep.spec.fixed) or 'none'}, budget: {budget}.", "",
             "| " + " | ".join(markdown_cell(c) for c in shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append("| " + " | ".join(markdown_cell(format_cell(row.get(c))) for c in shown) + " |")
    md_path = sweep.path / TABLE_MD
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def format_cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def default_axis(sweeps: Sequence[Sweep]) -> str:
    """The axis to plot against: the first grid path with several numeric values over all the sweeps that is not
    the seed (sweeps of one beta each, side by side, are drawn against beta), else the seed's."""
    values: dict[str, set[float]] = {}  # grid order; a path with a non-numeric value is no axis
    not_numeric: set[str] = set()
    for sweep in sweeps:
        for axis in sweep.spec.grid:
            parsed = [parse_override_value(v) for v in axis.values]
            if all(is_number(v) for v in parsed):
                values.setdefault(axis.path, set()).update(float(v) for v in parsed)
            else:
                not_numeric.add(axis.path)
    axes = [path for path, held in values.items() if len(held) > 1 and path not in not_numeric]
    if axes:
        return next((path for path in axes if path != SEED_PATH), axes[0])
    raise RunError("no grid axis with several numeric values to plot against; pass --x PATH")


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of ``values`` by linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def band_series(rows: Sequence[dict[str, Any]], x: str, metric: str) -> list[tuple[float, float, float, float, int]]:
    """(x, median, 10% quantile, 90% quantile, count) of ``metric`` over the rows sharing each x value."""
    groups: dict[float, list[float]] = {}
    for row in rows:
        xv, yv = row.get(x), row.get(metric)
        if is_number(xv) and is_number(yv) and math.isfinite(yv):
            groups.setdefault(float(xv), []).append(float(yv))
    return [(xv, statistics.median(ys), quantile(ys, BAND[0]), quantile(ys, BAND[1]), len(ys))
            for xv, ys in sorted(groups.items())]


@attrs.frozen
class Series:
    """One line of a figure or block of a summary table: a sweep, or several pooled (``series(pool=True)``)."""

    label: str
    sweeps: tuple[Sweep, ...]
    rows: tuple[dict[str, Any], ...]

    @property
    def grid_paths(self) -> list[str]:
        """The grid paths of its sweeps (pooled sweeps share them)."""
        return [a.path for a in self.sweeps[0].spec.grid]

    @property
    def mixed_recipe_texts(self) -> bool:
        """Whether its sweeps began from different texts of the recipe file (as far as sweep.json kept them)."""
        return len({s.spec.recipe_sha256 for s in self.sweeps if s.spec.recipe_sha256}) > 1


def pool_key(sweep: Sweep) -> tuple[Any, ...]:
    """What pooled sweeps share: the recipe, the fixed overrides, the budget, evaluation and the grid's paths, not
    its values (one experiment run in several directories: a seed each, a beta each, or shards of both)."""
    spec = sweep.spec
    return (spec.recipe, tuple(sorted(spec.fixed)), spec.steps, spec.evaluate, tuple(a.path for a in spec.grid))


def pooled_label(sweeps: Sequence[Sweep]) -> str:
    """The pooled sweeps' directory names' common prefix up to a whole ``_``/``-``-separated word, without a
    trailing ``_s``/``_seed`` (``imae_s0`` and ``imae_s1`` are ``imae``; ``imae_s16_b4`` and ``imae_s17_b8`` are
    ``imae``, not ``imae_s1``), or the recipe's file stem where they share none."""
    names = [s.name() for s in sweeps]
    prefix = os.path.commonprefix(names)
    if len(names) > 1:
        if any(len(name) > len(prefix) and name[len(prefix)] not in "_-" for name in names):
            prefix = re.sub(r"[^_-]*$", "", prefix)  # the names part inside a word: back to its start
        prefix = re.sub(r"(_s(eed)?)?[_-]*$", "", prefix)
    return prefix or Path(sweeps[0].spec.recipe).stem


def parse_only(specs: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``--only PATH=V1,V2`` options (``--grid``'s form) -> {path: the values, parsed as ``--set`` parses them}."""
    only: dict[str, tuple[Any, ...]] = {}
    for spec in specs:
        axis = GridAxis.parse(spec, option="--only")
        if axis.path in only:
            raise RunError(f"--only names {axis.path} more than once; list its values in one "
                           f"--only {axis.path}=V1,V2")
        only[axis.path] = tuple(parse_override_value(v) for v in axis.values)
    return only


def series(sweeps: Sequence[Sweep], pool: bool = False,
           only: Mapping[str, Sequence[Any]] | None = None) -> list[Series]:
    """The sweeps as series, one each, or with ``pool`` those of one experiment (``pool_key``) as one series
    whose rows are all their points. Two pooled sweeps holding the same point (same grid values) are refused:
    that point would count twice in the medians. ``only`` ({grid path: values}) keeps the points whose value
    of each path is one of those (seeds 0-2 of sweeps that ran more, say); a series left without points is
    left out, and a path that is no sweep's grid path is refused."""
    only = dict(only or {})
    paths = {a.path for sweep in sweeps for a in sweep.spec.grid}
    unknown = [p for p in only if p not in paths]
    if unknown:
        raise RunError(f"--only {', '.join(unknown)}: not a grid path of these sweeps; theirs: "
                       f"{', '.join(sorted(paths))}")
    groups: dict[tuple[Any, ...], list[Sweep]] = {}
    for sweep in sweeps:
        groups.setdefault(pool_key(sweep) if pool else (id(sweep),), []).append(sweep)
    out = []
    for members in groups.values():
        rows: list[dict[str, Any]] = []
        held: dict[tuple[Any, ...], Path] = {}
        for sweep in members:
            for row in sweep.rows():
                point = tuple((a.path, row.get(a.path)) for a in sweep.spec.grid)
                if point in held:
                    where = ", ".join(f"{p}={v}" for p, v in point)
                    raise RunError(f"{held[point]} and {sweep.path} both hold the point {where}: pool sweeps of "
                                   "different points (seeds or grid values), or leave out --pool")
                held[point] = sweep.path
                if all(path in row and row[path] in values for path, values in only.items()):
                    rows.append(row)
        label = pooled_label(members) if pool else members[0].name()
        if rows or not only:
            out.append(Series(label, tuple(members), tuple(rows)))
    return out


def pick_metrics(rows: Iterable[dict[str, Any]], skip: Iterable[str], wanted: Sequence[str] | None) -> list[str]:
    """The numbers to show: every numeric column of ``rows`` (but ``skip``), or those named in ``wanted`` by
    their full or short name (``SHORT_NAMES``), in that order; an unknown name is refused with the choices."""
    present = metric_columns(rows, skip=skip)
    if not wanted:
        return present
    by_name = {name: name for name in present} | {SHORT_NAMES[n]: n for n in present if n in SHORT_NAMES}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        choices = ", ".join(SHORT_NAMES.get(n, n) for n in present)
        raise RunError(f"no number named {', '.join(repr(u) for u in unknown)} in these sweeps; the numbers they "
                       f"have: {choices}")
    return [by_name[w] for w in wanted]


def resolve_axis(sweeps: Sequence[Sweep], lines: Sequence[Series], x: str | None) -> str:
    """The horizontal axis: ``default_axis`` when ``x`` is None, else a grid path or one of the numbers (full or
    short name), so that a figure can draw one number against another (PAPER.md Figure 5: MIG against the
    reconstruction); anything else is refused with the choices."""
    if x is None:
        return default_axis(sweeps)
    grid = [p for line in lines for p in line.grid_paths]
    if x in grid:
        return x
    try:
        return pick_metrics([row for line in lines for row in line.rows], [], [x])[0]
    except RunError:
        raise RunError(f"--x {x!r} is neither a grid path of these sweeps ({', '.join(dict.fromkeys(grid))}) nor "
                       "a number they have; name one of either") from None


def sweep_figure(sweeps: Sequence[Sweep], path: Path, x: str | None = None,
                 metrics: Sequence[str] | None = None, pool: bool = False,
                 only: Mapping[str, Sequence[Any]] | None = None) -> Path:
    """One panel per number against ``x``: for each series (a sweep, or with ``pool`` the sweeps of one
    experiment), the median over the other grid axes (seeds) and its 10-90% band (PAPER.md's 80% intervals).
    Series that share numbers share panels; ``metrics`` (full or short names) picks and orders the panels."""
    lines = series(sweeps, pool=pool, only=only)
    x = resolve_axis(sweeps, lines, x)
    skip = [x] + [p for line in lines for p in line.grid_paths]
    metrics = pick_metrics([row for line in lines for row in line.rows], skip, metrics)
    if not metrics:
        raise RunError("no finished point has numbers to plot yet; run the sweep first")
    panels = [(metric, [(line.label, band_series(line.rows, x, metric)) for line in lines]) for metric in metrics]
    title = f"median and {int(BAND[0] * 100)}-{int(BAND[1] * 100)}% band over the other grid axes"
    return figures.band_figure(panels, path, x_label=x, title=title)


def summary_table(sweeps: Sequence[Sweep], x: str | None = None, metrics: Sequence[str] | None = None,
                  pool: bool = False, only: Mapping[str, Sequence[Any]] | None = None) -> str:
    """A Markdown table of what the figure draws: per series and value of ``x``, the number of points with
    numbers (a point still training or diverged is not counted; an x with none has no row) and, for each
    number, the median over them with its range (``median (min-max)``; the value alone for one point)."""
    lines = series(sweeps, pool=pool, only=only)
    x = resolve_axis(sweeps, lines, x)
    skip = [x] + [p for line in lines for p in line.grid_paths]
    metrics = pick_metrics([row for line in lines for row in line.rows], skip, metrics)
    header = ["series", SHORT_NAMES.get(x) or x.split(".")[-1], "n"] + [SHORT_NAMES.get(m, m) for m in metrics]
    out = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for line in lines:
        xs = sorted({float(r[x]) for r in line.rows if is_number(r.get(x))})
        for xv in xs:
            at = [r for r in line.rows if is_number(r.get(x)) and float(r[x]) == xv]
            counted = [r for r in at if any(is_number(r.get(m)) and math.isfinite(r[m]) for m in metrics)]
            if not counted:  # every point at this x still to run: no row, as the figure draws none
                continue
            cells = [line.label, format_cell(xv), str(len(counted))]  # points with numbers, not pending ones
            for metric in metrics:
                ys = sorted(float(r[metric]) for r in at if is_number(r.get(metric)) and math.isfinite(r[metric]))
                if not ys:
                    cells.append("")
                elif len(ys) == 1:
                    cells.append(format_cell(ys[0], digits=3))
                else:
                    cells.append(f"{format_cell(statistics.median(ys), digits=3)} "
                                 f"({format_cell(ys[0], digits=3)}-{format_cell(ys[-1], digits=3)})")
            out.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    return "\n".join(out) + "\n"
