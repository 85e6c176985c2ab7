"""Sweeps: one recipe trained over a grid of overrides (beta, seeds, ...), collected into a table and figures.

PAPER.md's experiments are sweeps: beta in [1, 10] with gamma = 2 beta, 10 seeds per beta on MNIST and
Fashion-MNIST and 8 on dSprites, each plotted as a median with an 80% band across seeds. A sweep
directory holds

- ``sweep.json``: the recipe, the fixed ``--set`` overrides, the grid and the budget (written once);
- ``runs/NNN-path=value-...``: one ordinary run directory per grid point (``imae-kit run`` layout);
- ``sweep.csv`` and ``sweep.md``: one row per point, the grid values, the status and every headline
  number of its ``eval.json`` (or, without evaluation, each term's last logged value);
- ``figures/sweep.png``: each number against the swept axis, median and 10-90% band over the other axes.

Running the same sweep command again continues it: finished points are kept, interrupted ones resume
from their checkpoint, diverged ones are reported and left alone. ``collect`` draws several sweeps (one
per objective, say) on the same axes, as PAPER.md Figures 3 and 5 do.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import attrs

from imae_kit import figures
from imae_kit.errors import DivergenceError, RecipeError, RunError
from imae_kit.params import is_number
from imae_kit.recipe import load_recipe, parse_override_value
from imae_kit.report import headline, markdown_cell
from imae_kit.runs import EVAL_FILE, FIGURES_DIR, RECIPE_FILE, SUMMARY_FILE, RunDir, atomic_write_text
from imae_kit.training import evaluate_run, run as run_recipe

SWEEP_FORMAT = 1
SPEC_FILE = "sweep.json"
POINTS_DIR = "runs"
TABLE_CSV = "sweep.csv"
TABLE_MD = "sweep.md"
FIGURE_FILE = "sweep.png"
SEED_PATH = "train.seed"
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


@attrs.frozen
class GridAxis:
    """One swept override: a recipe path and the values (TOML text, as ``--set`` takes them) it runs through."""

    path: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> "GridAxis":
        """``PATH=V1,V2,...`` (commas inside brackets or quotes belong to a value: ``hidden=[64,64],[128]``)."""
        path, sep, text = spec.partition("=")
        path = path.strip()
        if not sep or not path:
            raise RecipeError(f"--grid {spec!r}: expected PATH=V1,V2,..., e.g. --grid vars.beta=1,2,4")
        values = tuple(v.strip() for v in split_top_level(text))
        if not values or any(v == "" for v in values):
            raise RecipeError(f"--grid {spec!r}: empty value in the list; e.g. --grid {path}=1,2,4")
        if len(set(values)) != len(values):
            raise RecipeError(f"--grid {spec!r}: a value is listed twice")
        return cls(path=path, values=values)


def split_top_level(text: str) -> list[str]:
    """Split ``text`` at commas that are outside brackets, braces and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


@attrs.frozen
class SweepPoint:
    """One grid point: its position, its (path, value) assignment and its run directory's name."""

    index: int
    assignment: tuple[tuple[str, str], ...]

    @property
    def overrides(self) -> tuple[str, ...]:
        """The point's ``--set`` overrides."""
        return tuple(f"{path}={value}" for path, value in self.assignment)

    @property
    def name(self) -> str:
        """``NNN-key=value-...``, safe as a directory name (the last part of each path is the key)."""
        parts = [f"{path.split('.')[-1]}={value}" for path, value in self.assignment]
        slug = re.sub(r"[^A-Za-z0-9=.+_-]+", "_", "-".join(parts))[:80]
        return f"{self.index:03d}-{slug}" if slug else f"{self.index:03d}"


def grid_points(axes: Sequence[GridAxis]) -> list[SweepPoint]:
    """Every combination of the axes' values, the first axis varying slowest."""
    combos = itertools.product(*[[(a.path, v) for v in a.values] for a in axes])
    return [SweepPoint(i, tuple(c)) for i, c in enumerate(combos)]


@attrs.frozen
class SweepSpec:
    """What defines a sweep: the recipe file, the fixed overrides, the grid, the budget and evaluation."""

    recipe: str
    fixed: tuple[str, ...]
    grid: tuple[GridAxis, ...]
    steps: int | None
    evaluate: bool

    def as_json(self) -> dict[str, Any]:
        """The form stored in sweep.json."""
        return {"format": SWEEP_FORMAT, "recipe": self.recipe, "fixed": list(self.fixed),
                "grid": [{"path": a.path, "values": list(a.values)} for a in self.grid],
                "steps": self.steps, "evaluate": self.evaluate}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SweepSpec":
        """Read sweep.json's form back."""
        return cls(recipe=data["recipe"], fixed=tuple(data["fixed"]),
                   grid=tuple(GridAxis(a["path"], tuple(a["values"])) for a in data["grid"]),
                   steps=data["steps"], evaluate=bool(data["evaluate"]))

    def differences(self, other: "SweepSpec") -> list[str]:
        """Human-readable fields in which ``other`` differs from this spec."""
        mine, theirs = self.as_json(), other.as_json()
        return [f"{k}: {mine[k]!r} here, {theirs[k]!r} asked for" for k in mine if mine[k] != theirs[k]]


class Sweep:
    """A sweep directory (see the module docstring)."""

    def __init__(self, path: str | Path, spec: SweepSpec):
        self.path = Path(path)
        self.spec = spec
        self.points = grid_points(spec.grid)

    @property
    def spec_path(self) -> Path:
        """sweep.json."""
        return self.path / SPEC_FILE

    @property
    def figure_path(self) -> Path:
        """figures/sweep.png, where ``sweep_figure`` draws by default."""
        return self.path / FIGURES_DIR / FIGURE_FILE

    def run_path(self, point: SweepPoint) -> Path:
        """The run directory of a point."""
        return self.path / POINTS_DIR / point.name

    @classmethod
    def prepare(cls, spec: SweepSpec, out: str | Path | None = None, runs_base: str | Path = "runs") -> "Sweep":
        """Check every grid point's recipe, then create the sweep directory or reopen it with the same spec.

        The default directory is ``runs/sweeps/<recipe name>``. Nothing is written when a point's recipe
        is invalid or an existing directory holds a different sweep."""
        if not spec.grid:
            raise RecipeError("a sweep needs at least one --grid PATH=V1,V2,...")
        paths = [a.path for a in spec.grid]
        if len(set(paths)) != len(paths):
            raise RecipeError(f"--grid names {sorted({p for p in paths if paths.count(p) > 1})} more than once")
        name = None
        for point in grid_points(spec.grid):  # every point's recipe is checked before any training
            recipe = load_recipe(spec.recipe, spec.fixed + point.overrides, steps=spec.steps)
            name = name or recipe.name
        path = Path(out) if out is not None else Path(runs_base) / "sweeps" / str(name)
        sweep = cls(path, spec)
        if sweep.spec_path.is_file():
            stored = SweepSpec.from_json(json.loads(sweep.spec_path.read_text(encoding="utf-8")))
            diffs = stored.differences(spec)
            if diffs:
                raise RunError(f"{path} holds a different sweep ({'; '.join(diffs)}); continue it with the "
                               f"same command, or choose another --out")
        elif path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunError(f"{path} exists and is not a sweep directory (no sweep.json); choose another --out")
        else:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(sweep.spec_path, json.dumps(spec.as_json(), indent=2) + "\n")
        return sweep

    @classmethod
    def open(cls, path: str | Path) -> "Sweep":
        """An existing sweep directory."""
        p = Path(path)
        spec_path = p / SPEC_FILE
        if not spec_path.is_file():
            raise RunError(f"{p} is not a sweep directory (no sweep.json); make one with imae-kit sweep")
        return cls(p, SweepSpec.from_json(json.loads(spec_path.read_text(encoding="utf-8"))))

    def status(self, point: SweepPoint) -> str:
        """'pending' (no run yet), a run.json status ('completed', 'interrupted', 'diverged', 'running', ...),
        or 'evaluated' for a completed run with its eval.json."""
        rd = self.run_path(point)
        if not (rd / RECIPE_FILE).is_file():
            return "pending"
        status = RunDir(rd).read_status().get("status", "created")
        if status == "completed" and (rd / EVAL_FILE).is_file():
            return "evaluated"
        return status

    def run(self, *, progress: bool = True, console: Any = None,
            announce: Callable[[SweepPoint, str], None] | None = None) -> str:
        """Train (and evaluate) every point not done yet, in order; return 'completed' or 'interrupted'.

        A point that diverges is recorded (its run.json says why) and the sweep goes on; a Ctrl-C or
        SIGTERM stops the sweep after checkpointing the point under way."""
        for point in self.points:
            status = self.status(point)
            done = status == "evaluated" or (status == "completed" and not self.spec.evaluate)
            if done or status == "diverged":
                if announce:
                    announce(point, f"{status}, kept")
                continue
            rd = self.run_path(point)
            if announce:
                announce(point, "starting" if status == "pending" else f"{status}, continuing")
            overrides = self.spec.fixed + point.overrides
            try:
                if status == "completed":  # trained, never evaluated
                    evaluate_run(RunDir(rd), progress=progress)
                    continue
                resume = str(rd) if status != "pending" else None
                outcome = run_recipe(self.spec.recipe, overrides=overrides, out=None if resume else str(rd),
                                     steps=self.spec.steps, resume=resume, evaluate=self.spec.evaluate,
                                     progress=progress, console=console)
            except DivergenceError as exc:
                if announce:
                    announce(point, f"diverged: {exc}")
                continue
            if outcome.train.status == "interrupted":
                return "interrupted"
        return "completed"

    # -- collection ------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point: ``point``, ``run``, each grid path's value, ``status`` and its numbers."""
        rows = []
        for point in self.points:
            rd = self.run_path(point)
            row: dict[str, Any] = {"point": point.index, "run": str(rd)}
            row.update({path: parse_override_value(value) for path, value in point.assignment})
            row["status"] = self.status(point)
            eval_path, summary_path = rd / EVAL_FILE, rd / SUMMARY_FILE
            if eval_path.is_file():
                evaluation = json.loads(eval_path.read_text(encoding="utf-8"))
                row.update({name: value for name, value in headline(evaluation) if name != "evaluation seconds"})
            elif summary_path.is_file():
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
                row.update({f"{label} (last logged)": rec.get("value")
                            for label, rec in (summary.get("terms") or {}).items()})
            rows.append(row)
        return rows

    def name(self) -> str:
        """The sweep's label in tables and figure legends: its directory name."""
        return self.path.name


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
