"""The run directory: resolved recipe, status, metrics.jsonl, checkpoint, evaluation and report.

    RUN_DIR/
      recipe.toml       the resolved recipe (after ${vars} and --set): `imae-kit run RUN_DIR/recipe.toml` repeats it
      run.json          status (running, completed, diverged, interrupted, stopped), timings, versions, why it
                        stopped, the command line's own choices (options: evaluate, quiet, threads)
      metrics.jsonl     one line per logged step: loss, lr and every term's value, weight and contribution
      checkpoint.pt     the last good checkpoint (model, optimiser, scheduler, RNG states, step); atomic writes
      checkpoint.prev.pt  the checkpoint before it, kept by the same atomic rotation: a resume uses the newest
                        that loads
      summary.json      final values of every term
      eval.json, figures/, report.md   written by the evaluation
      .lock             held (flock) by the process writing the run; the OS releases it if that process dies
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from imae_kit.atomic import atomic_file, remove_stale_temporaries
from imae_kit.errors import ImaeKitWarning, RunError, refused_writes

RECIPE_FILE = "recipe.toml"
STATUS_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_CHECKPOINT_FILE = "checkpoint.prev.pt"
SUMMARY_FILE = "summary.json"
EVAL_FILE = "eval.json"
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
LOCK_FILE = ".lock"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a kill at any instant leaves the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path, *, keep_previous: Path | None = None) -> None:
    """torch.save through a temp file, flush, fsync and rename (the file replaced kept as ``keep_previous``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, keep_previous=keep_previous) as f:
        torch.save(obj, f)


class MetricsWarning(ImaeKitWarning):
    """A damaged line of metrics.jsonl (a torn write, a power cut) that was dropped."""


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: a checkpoint from elsewhere cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}; the run stopped before its first checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise RunError(f"cannot read checkpoint {path}: it is damaged or incomplete ({type(exc).__name__}: "
                       f"{first})") from exc


class RunDir:
    """One run's directory and the files in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def recipe_path(self) -> Path:
        """The resolved recipe."""
        return self.path / RECIPE_FILE

    @property
    def metrics_path(self) -> Path:
        """metrics.jsonl."""
        return self.path / METRICS_FILE

    @property
    def checkpoint_path(self) -> Path:
        """The last good checkpoint."""
        return self.path / CHECKPOINT_FILE

    @property
    def previous_checkpoint_path(self) -> Path:
        """The checkpoint before the last one (kept by the rotation)."""
        return self.path / PREVIOUS_CHECKPOINT_FILE

    def checkpoint_files(self) -> list[Path]:
        """The checkpoints present, newest first (checkpoint.pt, then checkpoint.prev.pt)."""
        return [p for p in (self.checkpoint_path, self.previous_checkpoint_path) if p.is_file()]

    def load_newest_checkpoint(self, map_location: str | torch.device = "cpu"
                               ) -> tuple[dict, Path, list[tuple[Path, str]]] | None:
        """(state, file, [(damaged file, why)]) for the newest checkpoint that loads; None if there is none.

        When every checkpoint present is damaged, a RunError says what to do."""
        files = self.checkpoint_files()
        if not files:
            return None
        damaged: list[tuple[Path, str]] = []
        for p in files:
            try:
                return load_checkpoint(p, map_location=map_location), p, damaged
            except RunError as exc:
                damaged.append((p, str(exc)))
        names = " and ".join(p.name for p in files)
        raise RunError(f"cannot resume {self.path}: no checkpoint loads ({'; '.join(why for _, why in damaged)}). "
                       f"To train this run again from step 0, move {names} out of {self.path} and resume; or "
                       f"start a new run: imae-kit run {self.recipe_path} --out NEW_DIR")

    @property
    def status_path(self) -> Path:
        """run.json."""
        return self.path / STATUS_FILE

    @classmethod
    def create(cls, name: str, out: str | Path | None = None, base: str | Path = "runs") -> "RunDir":
        """A new run directory: ``out`` if given (must not exist or be empty), else ``base/name``,
        ``base/name-2``, ... (an existing directory is never overwritten)."""
        if out is not None:
            p = Path(out)
            if p.exists() and (not p.is_dir() or any(p.iterdir())):
                raise RunError(f"run directory {p} already exists and is not empty; choose another --out, "
                               f"or continue it with: imae-kit run --resume {p}")
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunError(f"cannot create run directory {p}: {exc.strerror}") from exc
            return cls(p)
        base = Path(base)
        for i in range(1, 10_000):
            p = base / (name if i == 1 else f"{name}-{i}")
            try:
                p.mkdir(parents=True, exist_ok=False)
                return cls(p)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunError(f"cannot create run directory {p}: {exc.strerror}") from exc
        raise RunError(f"too many runs named {name!r} under {base}; clean up or pass --out")

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run directory (must hold recipe.toml)."""
        p = Path(path)
        if not p.is_dir():
            raise RunError(f"run directory {p} not found")
        if not (p / RECIPE_FILE).is_file():
            raise RunError(f"{p} is not a run directory (no {RECIPE_FILE}); pass the folder `imae-kit run` made")
        return cls(p)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold RUN_DIR/.lock while this process writes the run: a second writer gets a RunError.

        An advisory ``flock``: a process that dies (even by SIGKILL) releases it, so a crashed run
        can always be resumed. Where ``fcntl`` is missing (Windows) no lock is taken."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        with refused_writes(self.path / LOCK_FILE, "the run directory cannot be written: free space or fix its "
                                                   "permissions, then try again"):
            f = open(self.path / LOCK_FILE, "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                raise RunError(f"{self.path} is in use by another imae-kit process (pid {holder}); wait for it "
                               f"to finish or stop it, then try again") from None
            try:  # the pid only tells a second process who holds the lock: a full disk must not stop here
                f.seek(0)
                f.truncate()
                f.write(f"{os.getpid()}\n")
                f.flush()
            except OSError:
                pass
            yield
        finally:
            f.close()

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temp files of atomic writes that a killed process left behind; return what was removed."""
        return remove_stale_temporaries(self.path)

    # -- status ----------------------------------------------------------------------------

    def read_status(self) -> dict[str, Any]:
        """run.json as a dict ({} if absent)."""
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into run.json (atomically) and return the result."""
        status = self.read_status()
        status.update(fields)
        status.setdefault("python", platform.python_version())
        status.setdefault("torch", torch.__version__)
        atomic_write_text(self.status_path, json.dumps(status, indent=2, default=str) + "\n")
        return status

    # -- metrics ---------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl (handed to the OS at once: a killed process loses nothing).

        A write the disk refuses raises DiskWriteError; the torn line it may leave is dropped when read."""
        with refused_writes(self.metrics_path), open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def sync_metrics(self) -> None:
        """fsync metrics.jsonl: done before each checkpoint, so that even a power cut cannot leave a
        checkpoint newer than the lines it covers (one fsync per checkpoint, not one per logged step)."""
        try:
            fd = os.open(self.metrics_path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            with refused_writes(self.metrics_path):
                os.fsync(fd)
        finally:
            os.close(fd)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line of metrics.jsonl; a damaged line (a torn write, a power cut) is dropped with a
        MetricsWarning naming it."""
        return list(self.iter_metrics())

    def iter_metrics(self) -> Iterator[dict[str, Any]]:
        """Iterate the complete, readable lines of metrics.jsonl (read as bytes: a power cut can leave any)."""
        if not self.metrics_path.is_file():
            return
        with open(self.metrics_path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                record, why = _metrics_record(raw)
                if record is not None:
                    yield record
                elif why:
                    warnings.warn(MetricsWarning(f"{self.metrics_path} line {number} is damaged ({why}) and was "
                                                 f"dropped: {raw[:60]!r}"), stacklevel=2)

    def truncate_metrics(self, up_to_step: int) -> None:
        """Keep only lines with step <= ``up_to_step`` (used when resuming from a checkpoint); damaged lines go."""
        keep = [r for r in self.iter_metrics() if r.get("step", 0) <= up_to_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep))

    # -- json files ------------------------------------------------------------------------

    def write_json(self, name: str, data: Any) -> Path:
        """Atomically write ``data`` as RUN_DIR/name."""
        p = self.path / name
        atomic_write_text(p, json.dumps(data, indent=2, default=str) + "\n")
        return p

    def read_json(self, name: str) -> Any:
        """RUN_DIR/name as JSON, or None if absent."""
        p = self.path / name
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{p} is not valid JSON ({exc}); it may have been edited by hand") from exc


def _metrics_record(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(record, "") for a good metrics.jsonl line; (None, why) for a damaged one; (None, "") for a blank one."""
    if not raw.strip():
        return None, "" if raw.endswith(b"\n") else "a torn last line"
    if not raw.endswith(b"\n"):
        return None, "a torn last line"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{type(exc).__name__}"
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None, "not a record with a step"
    return record, ""
