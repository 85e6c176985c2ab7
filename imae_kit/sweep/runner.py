"""The sweep directory: its spec, its points' run directories, and running them (one by one, as jobs, or a shard)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs
from imae_kit.errors import DivergenceError, RecipeError, RunError
from imae_kit.recipe import load_recipe, parse_override_value
from imae_kit.report import headline
from imae_kit.runs import EVAL_FILE, FIGURES_DIR, RECIPE_FILE, SUMMARY_FILE, RunDir, atomic_write_text
from imae_kit.sweep.claims import default_threads, flock, run_lock_free
from imae_kit.sweep.grid import SweepPoint, grid_points, in_shard, SweepSpec
from imae_kit.training import evaluate_run, run as run_recipe


SPEC_FILE = "sweep.json"
POINTS_DIR = "runs"
CLAIMS_DIR = ".claims"
LOGS_DIR = "logs"
TABLE_CSV = "sweep.csv"
TABLE_MD = "sweep.md"
FIGURE_FILE = "sweep.png"


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
        spec = attrs.evolve(spec, recipe_sha256=recipe_digest(spec.recipe))
        path = Path(out) if out is not None else Path(runs_base) / "sweeps" / str(name)
        sweep = cls(path, spec)
        if sweep.spec_path.is_file():
            stored = SweepSpec.from_json(json.loads(sweep.spec_path.read_text(encoding="utf-8")))
            diffs = stored.differences(spec)
            if diffs:
                raise RunError(f"{path} holds a different sweep ({'; '.join(diffs)}); continue it with the "
                               f"same command, or choose another --out")
            sweep = cls(path, stored)
            sweep.check_recipe_unchanged()
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

    def check_recipe_unchanged(self) -> None:
        """Refuse to train another point when the recipe file's text is no longer the one the sweep began with
        (sweep.json's ``recipe_sha256``): its points would silently mix two recipes."""
        began = self.spec.recipe_sha256
        if began is None:  # a sweep from before the digest was kept
            return
        now = recipe_digest(self.spec.recipe)
        if now != began:
            state = "is gone" if now is None else "has changed"
            raise RunError(f"{self.spec.recipe} {state} since the sweep in {self.path} began (sweep.json keeps "
                           f"the SHA-256 of the text its points train from): the points would mix two recipes. "
                           f"Restore the file's text (e.g. git diff {self.spec.recipe}) to continue this sweep, "
                           f"or sweep the new text into another --out")

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
        with flock(self.claim_path(point)) as got:
            yield got and run_lock_free(self.run_path(point))

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
        if status != "completed":  # an evaluation alone reads the run's own recipe.toml
            self.check_recipe_unchanged()
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
        if status != "completed":  # an evaluation alone reads the run's own recipe.toml
            self.check_recipe_unchanged()
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


def recipe_digest(path: str | Path) -> str | None:
    """The SHA-256 of a recipe file's bytes (None if it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _sweep_entry(name: str) -> bool:
    """Whether ``name`` in a directory without sweep.json can be a sweep's own (another worker creating it)."""
    return name in (SPEC_FILE, POINTS_DIR, CLAIMS_DIR, LOGS_DIR) or (name.startswith(f".{SPEC_FILE}.")
                                                                    and name.endswith(".tmp"))
