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

Spreading a sweep (no scheduler of our own; any launcher does it):

- ``jobs``: N points at once on one machine, each a subprocess ``python -m imae_kit run ...`` (or ``eval``)
  with cores / N torch threads, its output in ``logs/NNN-....log``;
- ``shard = (I, N)``: only the points whose index i (0-based, the ``NNN`` of their directory) has
  i % N == I - 1, so N workers (a SLURM array, GNU parallel, a shell loop) share one sweep directory on a
  shared file system.

A worker claims a point by an advisory lock (``.claims/NNN-....lock``, flock, released by the OS if the
worker dies) for as long as it trains it, and re-reads the point's status once it holds the claim: a point
claimed by another worker is skipped, a finished one kept, so no point is ever trained twice at once, and
workers whose shards overlap (or the same command started twice) divide the points between them. The
tables and figures read every point's run directory, so they show the union of what all workers did.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs

from imae_kit import figures
from imae_kit.errors import DivergenceError, RecipeError, RunError
from imae_kit.params import is_number
from imae_kit.recipe import load_recipe, parse_override_value
from imae_kit.report import headline, markdown_cell
from imae_kit.runs import (EVAL_FILE, FIGURES_DIR, LOCK_FILE, RECIPE_FILE, SUMMARY_FILE, RunDir,
                           atomic_write_text)
from imae_kit.training import evaluate_run, run as run_recipe

SWEEP_FORMAT = 1
SPEC_FILE = "sweep.json"
POINTS_DIR = "runs"
CLAIMS_DIR = ".claims"
LOGS_DIR = "logs"
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


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) -> (I, N): the shard of points i with i % N == I - 1."""
    left, sep, right = text.partition("/")
    try:
        index, count = int(left), int(right)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise RecipeError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 2/8 (the points i "
                          f"with i % 8 == 1); in a SLURM array: --shard $((SLURM_ARRAY_TASK_ID + 1))/N")
    return index, count


def in_shard(point: "SweepPoint", shard: tuple[int, int] | None) -> bool:
    """Whether ``point`` belongs to ``shard`` = (I, N) (every point when None)."""
    return shard is None or point.index % shard[1] == shard[0] - 1


def default_threads(jobs: int) -> int:
    """Torch threads for each of ``jobs`` points run at once: this process's cores / jobs, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[bool]:
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


def _run_lock_free(run_dir: Path) -> bool:
    """Whether no process holds the run directory's own lock (RunDir.locked) right now."""
    if not (run_dir / LOCK_FILE).is_file():
        return True
    with _flock(run_dir / LOCK_FILE) as free:
        return free


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
        elif path.exists() and (not path.is_dir() or any(not _sweep_entry(p.name) for p in path.iterdir())):
            raise RunError(f"{path} exists and is not a sweep directory (no sweep.json); choose another --out")
        else:  # another worker may be creating it at this instant: same spec, same file; a different one is refused
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(sweep.spec_path, json.dumps(spec.as_json(), indent=2) + "\n")
            stored = SweepSpec.from_json(json.loads(sweep.spec_path.read_text(encoding="utf-8")))
            if stored.differences(spec):
                raise RunError(f"{path} was just created by another worker for a different sweep "
                               f"({'; '.join(stored.differences(spec))}); choose another --out")
        return sweep

    def claim_path(self, point: SweepPoint) -> Path:
        """The lock file a worker holds while it trains ``point``."""
        return self.path / CLAIMS_DIR / f"{point.name}.lock"

    def log_path(self, point: SweepPoint) -> Path:
        """Where a point run as a subprocess (``jobs`` > 1) writes its output."""
        return self.path / LOGS_DIR / f"{point.name}.log"

    @contextlib.contextmanager
    def claimed(self, point: SweepPoint) -> Iterator[bool]:
        """Hold ``point``'s claim for the block; yields False (and holds nothing) if another worker has it,
        or if some other process (``imae-kit run --resume``) is writing its run directory."""
        with _flock(self.claim_path(point)) as got:
            yield got and _run_lock_free(self.run_path(point))

    def is_done(self, status: str) -> bool:
        """Whether a point in ``status`` needs no more work (evaluated, trained without evaluation, or diverged)."""
        return status in ("evaluated", "diverged") or (status == "completed" and not self.spec.evaluate)

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
            announce: Callable[[SweepPoint, str], None] | None = None,
            shard: tuple[int, int] | None = None) -> str:
        """Train (and evaluate) every point of ``shard`` (all when None) not done yet, in order, in this
        process; return 'completed' or 'interrupted'.

        A point that diverges is recorded (its run.json says why) and the sweep goes on; a point another
        worker has claimed is skipped; a Ctrl-C or SIGTERM stops the sweep after checkpointing the point
        under way."""
        for point in self.points:
            if not in_shard(point, shard):
                continue
            if self.is_done(self.status(point)):
                if announce:
                    announce(point, f"{self.status(point)}, kept")
                continue
            with self.claimed(point) as mine:
                if not mine:
                    if announce:
                        announce(point, "taken by another worker, skipped")
                    continue
                status = self.status(point)  # again, under the claim: another worker may have finished it
                if self.is_done(status):
                    if announce:
                        announce(point, f"{status}, kept")
                    continue
                if self._run_here(point, status, progress, console, announce) == "interrupted":
                    return "interrupted"
        return "completed"

    def _run_here(self, point: SweepPoint, status: str, progress: bool, console: Any,
                  announce: Callable[[SweepPoint, str], None] | None) -> str:
        """Train (or evaluate) one claimed point in this process; its outcome's status."""
        rd = self.run_path(point)
        if announce:
            announce(point, "starting" if status == "pending" else f"{status}, continuing")
        overrides = self.spec.fixed + point.overrides
        try:
            if status == "completed":  # trained, never evaluated
                evaluate_run(RunDir(rd), progress=progress)
                return "completed"
            resume = str(rd) if status != "pending" else None
            outcome = run_recipe(self.spec.recipe, overrides=overrides, out=None if resume else str(rd),
                                 steps=self.spec.steps, resume=resume, evaluate=self.spec.evaluate,
                                 progress=progress, console=console)
        except DivergenceError as exc:
            if announce:
                announce(point, f"diverged: {exc}")
            return "diverged"
        return outcome.train.status

    def point_command(self, point: SweepPoint, status: str, *, threads: int, quiet: bool) -> list[str]:
        """The ``python -m imae_kit`` command line that trains (or evaluates) ``point`` from ``status``."""
        rd = str(self.run_path(point))
        base = [sys.executable, "-m", "imae_kit"]
        if status == "completed":
            return base + ["eval", rd, "--threads", str(threads)] + (["-q"] if quiet else [])
        cmd = base + ["run", self.spec.recipe]
        for override in self.spec.fixed + point.overrides:
            cmd += ["--set", override]
        cmd += ["--out", rd] if status == "pending" else ["--resume", rd]
        if self.spec.steps is not None:
            cmd += ["--steps", str(self.spec.steps)]
        cmd += ["--eval" if self.spec.evaluate else "--no-eval", "--threads", str(threads)]
        return cmd + (["-q"] if quiet else ["--no-quiet"])

    def run_parallel(self, jobs: int, *, threads: int | None = None, quiet: bool = True,
                     announce: Callable[[SweepPoint, str], None] | None = None,
                     shard: tuple[int, int] | None = None, poll: float = 0.2) -> tuple[str, list[str]]:
        """Run up to ``jobs`` points of ``shard`` at once, each a subprocess with ``threads`` torch threads
        (default: cores / jobs) whose output goes to ``logs/``; return (status, failures).

        This process holds each point's claim while its subprocess runs. A point that diverges is recorded
        and the sweep goes on; one that fails otherwise is listed in ``failures`` (its log says why) and the
        others go on. Ctrl-C or SIGTERM is passed on to every running point (each checkpoints and stops),
        no new point starts, and the status is 'interrupted'."""
        threads = threads or default_threads(jobs)
        queue = [p for p in self.points if in_shard(p, shard)]
        running: dict[int, tuple[SweepPoint, subprocess.Popen, contextlib.ExitStack, Any]] = {}
        failures: list[str] = []
        stop: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            stop.append(signum)
            for _, proc, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while queue or running:
                while queue and len(running) < jobs and not stop:
                    self._start_point(queue.pop(0), threads, quiet, announce, running)
                for pid, (point, proc, claim, log) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[pid]
                    log.close()
                    claim.close()
                    self._finished(point, proc.returncode, announce, failures)
                if running or (queue and not stop):
                    time.sleep(poll)
                elif stop:
                    break
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return ("interrupted" if stop else "completed"), failures

    def _start_point(self, point: SweepPoint, threads: int, quiet: bool,
                     announce: Callable[[SweepPoint, str], None] | None,
                     running: dict[int, tuple[SweepPoint, subprocess.Popen, contextlib.ExitStack, Any]]) -> None:
        """Claim ``point`` and start its subprocess (or say why not)."""
        status = self.status(point)
        if self.is_done(status):
            if announce:
                announce(point, f"{status}, kept")
            return
        claim = contextlib.ExitStack()
        if not claim.enter_context(self.claimed(point)):
            claim.close()
            if announce:
                announce(point, "taken by another worker, skipped")
            return
        status = self.status(point)
        if self.is_done(status):
            claim.close()
            if announce:
                announce(point, f"{status}, kept")
            return
        log_path = self.log_path(point)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        # a session of its own: a Ctrl-C at the terminal reaches this process only, which passes it on once
        proc = subprocess.Popen(self.point_command(point, status, threads=threads, quiet=quiet), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        running[proc.pid] = (point, proc, claim, log)
        if announce:
            what = "starting" if status == "pending" else f"{status}, continuing"
            announce(point, f"{what} (pid {proc.pid}, {threads} thread{'s' if threads > 1 else ''}, log "
                            f"{log_path})")

    def _finished(self, point: SweepPoint, code: int, announce: Callable[[SweepPoint, str], None] | None,
                  failures: list[str]) -> None:
        """Report a point's subprocess that ended with exit status ``code``."""
        status = self.status(point)
        if code == 0 or status == "diverged" or code in (130, 143):
            what = status
            if status == "diverged":
                what = f"diverged: {RunDir(self.run_path(point)).read_status().get('stop_reason', '')}"
            if announce:
                announce(point, what)
            return
        lines = [ln for ln in self.log_path(point).read_text(encoding="utf-8", errors="replace").splitlines()
                 if ln.strip()]
        why = lines[-1].strip() if lines else "no output"
        failures.append(f"point {point.index} ({' '.join(point.overrides)}) failed with exit status {code}: {why} "
                        f"(log: {self.log_path(point)})")
        if announce:
            announce(point, f"failed (exit status {code}): {why}")

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


def _sweep_entry(name: str) -> bool:
    """Whether ``name`` in a directory without sweep.json can be a sweep's own (another worker creating it)."""
    return name in (SPEC_FILE, POINTS_DIR, CLAIMS_DIR, LOGS_DIR) or (name.startswith(f".{SPEC_FILE}.")
                                                                    and name.endswith(".tmp"))


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
