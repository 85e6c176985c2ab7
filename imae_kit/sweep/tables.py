"""A sweep's results: the table (csv, Markdown) of every point's headline numbers and the band figures."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from imae_kit import figures
from imae_kit.errors import RunError
from imae_kit.params import is_number
from imae_kit.recipe import parse_override_value
from imae_kit.report import markdown_cell
from imae_kit.runs import atomic_write_text
from imae_kit.sweep.grid import SEED_PATH
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
    """The axis to plot against: the first grid path with several numeric values that is not the seed."""
    for sweep in sweeps:
        for axis in sweep.spec.grid:
            numeric = [v for v in axis.values if is_number(parse_override_value(v))]
            if axis.path != SEED_PATH and len(numeric) > 1:
                return axis.path
    for sweep in sweeps:
        for axis in sweep.spec.grid:
            if len(axis.values) > 1 and all(is_number(parse_override_value(v)) for v in axis.values):
                return axis.path
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


def sweep_figure(sweeps: Sequence[Sweep], path: Path, x: str | None = None,
                 metrics: Sequence[str] | None = None) -> Path:
    """One panel per number against ``x``: for each sweep, the median over the other grid axes (seeds)
    and its 10-90% band (PAPER.md's 80% intervals). Sweeps that share numbers share panels."""
    x = x or default_axis(sweeps)
    table = [(s, s.rows()) for s in sweeps]
    if metrics is None:
        metrics = []
        for _, rows in table:
            metrics += [m for m in metric_columns(rows, skip=[x] + [a.path for s, _ in table for a in s.spec.grid])
                        if m not in metrics]
    if not metrics:
        raise RunError("no finished point has numbers to plot yet; run the sweep first")
    panels = [(metric, [(sweep.name(), band_series(rows, x, metric)) for sweep, rows in table]) for metric in metrics]
    title = f"median and {int(BAND[0] * 100)}-{int(BAND[1] * 100)}% band over the other grid axes"
    return figures.band_figure(panels, path, x_label=x, title=title)
