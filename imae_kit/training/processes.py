"""One run over several processes: ``torchrun --nproc-per-node N -m imae_kit run RECIPE``.

Each process trains the same model under DistributedDataParallel (gloo on the CPU, NCCL on CUDA with one
GPU per process) on its slice of every global batch: ``train.batch_size`` stays the global batch, cut into
N equal slices of the same (seed, epoch) permutation, so N processes see the batches one process sees.
Every batch statistic is taken over the global batch (``Step.gather``; see imae_kit.distributed), BatchNorm
too (``train.sync_batch_norm``), so the gradient after DDP's average is that of one process's loss on the
global batch. What changes against one process:

- random draws (z, the Gumbel y, VAT's directions, the MMD's prior sample) come from one stream per
  process: rank 0's is the single-process stream, the others are seeded from (seed, rank); a checkpoint
  keeps every process's state, so a resume with the same N continues bit for bit, and one with another N
  (or one process) continues from rank 0's state with fresh streams for the others;
- the logged loss and term values are the means over processes, i.e. the global batch's, the same on
  every process; a non-finite one stops every process at the same step with the same message;
- a Ctrl-C or SIGTERM that reaches any process stops every process after the same step (they agree at
  the end of each step), rank 0 checkpoints, all exit with 130 or 143;
- rank 0 alone writes the run directory (run.json, metrics.jsonl, checkpoints, the evaluation); the
  other processes read it through ``MirrorRunDir``;
- a process that fails or is killed makes the others' next collective fail within seconds: they stop with
  a RunError (exit status 2) that points at the failed process's own message, and rank 0 records the
  stop in run.json; ``imae-kit run --resume`` continues, with any number of processes.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from imae_kit import distributed
from imae_kit.distributed import ProcessContext, ProcessGroupLost
from imae_kit.errors import DiskWriteError, ImaeKitError, RunError
from imae_kit.objective import ObjectiveOutput, TermRecord
from imae_kit.progress import is_terminal
from imae_kit.recipe.spec import Recipe
from imae_kit.runs import RunDir, atomic_write_text
from imae_kit.step import Step
from imae_kit.training.setup import load_data
from imae_kit.training.signals import StopFlag
from imae_kit.training.state import rng_state, set_device_rng_state, set_rng_state
from imae_kit.training.trainer import Trainer, TrainResult


def _lost(exc: ProcessGroupLost, process: ProcessContext, where: str = "") -> RunError:
    return RunError(f"process {process.rank} of {process.world_size}: another process of this run stopped "
                    f"({exc}); its own output says why{where}")


@contextlib.contextmanager
def _peers(process: ProcessContext) -> Iterator[None]:
    """Turn a failed collective into a RunError (exit status 2) pointing at the other processes."""
    try:
        yield
    except ProcessGroupLost as exc:
        raise _lost(exc, process) from exc


def join_processes() -> ProcessContext:
    """Join the processes torchrun started (nothing in one process); idempotent."""
    try:
        return distributed.init_from_environment()
    except ProcessGroupLost as exc:
        raise RunError(f"cannot join the other processes of this run ({exc}); start it with torchrun, or "
                       f"unset WORLD_SIZE to train in one process") from exc


def is_main_process() -> bool:
    """Whether this process writes the run directory (rank 0, or the only process)."""
    return distributed.current().is_main


class MirrorRunDir(RunDir):
    """The run directory as a process other than rank 0 sees it: it reads everything and writes nothing."""

    def write_status(self, **fields: Any) -> dict[str, Any]:
        """run.json as it would read after rank 0's write (nothing is written here)."""
        status = self.read_status()
        status.update(fields)
        return status

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Rank 0 appends."""

    def sync_metrics(self) -> None:
        """Rank 0 syncs."""

    def truncate_metrics(self, up_to_step: int) -> None:
        """Rank 0 truncates."""

    def write_json(self, name: str, data: Any) -> Path:
        """Rank 0 writes."""
        return self.path / name

    def remove_stale_temp_files(self) -> list[Path]:
        """Rank 0 cleans up."""
        return []

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Rank 0 holds the run's lock."""
        yield


def open_run_dir(path: str) -> RunDir:
    """An existing run directory: the writer's on rank 0, a mirror elsewhere."""
    rd = RunDir.open(path)
    return rd if is_main_process() else MirrorRunDir(rd.path)


def create_run_dir(name: str, *, out: str | None, base: str, recipe_text: str) -> RunDir:
    """Rank 0 creates the run directory (``RunDir.create``) and writes the resolved recipe; every process
    gets that directory, or the same error."""
    process = distributed.current()
    outcome: tuple[str, str] = ("", "")
    if process.is_main:
        try:
            rd = RunDir.create(name, out=out, base=base)
            atomic_write_text(rd.recipe_path, recipe_text)
            outcome = ("ok", str(rd.path))
        except ImaeKitError as exc:
            with _peers(process):
                process.broadcast(("error", str(exc)))
            raise
        with _peers(process):
            process.broadcast(outcome)
        return rd
    with _peers(process):
        kind, text = process.broadcast(None)
    if kind != "ok":
        raise RunError(text)
    return MirrorRunDir(text)


def make_trainer(recipe: Recipe, run_dir: RunDir | None, **kwargs: Any) -> Trainer:
    """The Trainer of this process: a ``DistributedTrainer`` under torchrun, the plain one otherwise."""
    process = join_processes()
    if not process.is_distributed:
        return Trainer(recipe, run_dir, **kwargs)
    with _peers(process):
        return DistributedTrainer(recipe, run_dir, process=process, **kwargs)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process ``rank``'s random stream (of a resume at ``step`` that has no saved state for it)."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, dtype=np.uint64)[0]
               % (2**63 - 1))


class _StepNetworks(nn.Module):
    """The forward pass of a step (encode, sample, decode), as the module DDP wraps."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[Any, Any, Any]:
        posterior = self.model.encode(x)
        samples = self.model.sample_latents(posterior)
        return posterior, samples, self.model.decode(samples.y, samples.z)


class DistributedTrainer(Trainer):
    """The Trainer of one of N processes (see the module docstring)."""

    def __init__(self, recipe: Recipe, run_dir: RunDir | None, *, process: ProcessContext, steps: int | None = None,
                 progress: bool = True, console: Any = None, splits: Any = None):
        self.process = process
        n = process.world_size
        if recipe.train.batch_size % n:
            raise RunError(f"{recipe.source}: train.batch_size = {recipe.train.batch_size} (the global batch) is not "
                           f"a multiple of the {n} processes; use a multiple of {n}, or another --nproc-per-node")
        if splits is None:  # rank 0 first: a data set provisioned or cached on first use is written once
            if process.is_main:
                splits = load_data(recipe)
            process.barrier()
            if not process.is_main:
                splits = load_data(recipe)
        if not process.is_main and console is not None and is_terminal(console):
            progress = False  # one live bar on a terminal (rank 0's); off a terminal every process logs
        super().__init__(recipe, run_dir, steps=steps, progress=progress, console=console, splits=splits)
        self.sync_batch_norm = recipe.train.sync_batch_norm
        if self.sync_batch_norm:
            distributed.convert_batch_norm(self.model, process)
        if not process.is_main:
            torch.manual_seed(rank_seed(recipe.train.seed, process.rank))
        # the global statistics keep BatchNorm's buffers equal on every process: no broadcast at each forward
        buffers = ({"forward_sync_buffers": not self.sync_batch_norm} if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": not self.sync_batch_norm})
        self.networks = DistributedDataParallel(
            _StepNetworks(self.model), device_ids=[self.device.index] if self.device.type == "cuda" else None,
            **buffers)
        self._through_ddp = True
        self._rng_ranks: list[Any] | None = None

    # -- the step ---------------------------------------------------------------------------------

    def make_step(self, x: torch.Tensor, step: int, index: torch.Tensor | None = None) -> Step:
        """This process's slice of the step, through DDP (so that backward averages the gradients)."""
        if self._through_ddp:
            posterior, samples, likelihood = self.networks(x)
        else:
            posterior = self.model.encode(x)
            samples = self.model.sample_latents(posterior)
            likelihood = self.model.decode(samples.y, samples.z)
        return Step(x=x, posterior=posterior, samples=samples, likelihood=likelihood, encode=self.model.encode,
                    dataset_size=len(self.train_set), step=step, precision=self.model.precision,
                    gather=self.process.gather, rank=self.process.rank, world_size=self.process.world_size,
                    index=index, data=self.train_set)

    def _local_indices(self, index: torch.Tensor) -> torch.Tensor:
        return self.process.slice(index)

    def _global_output(self, out: ObjectiveOutput) -> ObjectiveOutput:
        """Means over processes of the loss and of every value: the global batch's numbers, on every process."""
        active, records = list(out.active_values.items()), list(out.records.items())
        values = [float(out.loss.detach())] + [float(v.detach()) for _, v in active]
        values += [x for _, r in records for x in (r.value, r.contribution)]
        mean = self.process.mean_of(values)
        loss, mean = mean[0], mean[1:]
        act = {label: torch.tensor(mean[i]) for i, (label, _) in enumerate(active)}
        mean = mean[len(active):]
        recs = {label: TermRecord(mean[2 * i], r.weight, mean[2 * i + 1], r.sense)
                for i, (label, r) in enumerate(records)}
        return ObjectiveOutput(loss=torch.tensor(loss), records=recs, active_values=act)

    def _stop_requested(self, flag: StopFlag) -> bool:
        asked = self.process.max_of(flag.signum if flag.requested else 0)
        if asked and flag.signum is None:
            flag.signum = asked  # the signal another process got: same message, same exit status
        return bool(asked)

    def _monitor_record(self) -> dict[str, Any]:
        return self.process.broadcast(self.monitor(self.model) if self.process.is_main else None)

    def _blame_gradient(self, x: torch.Tensor, rng_before: dict[str, torch.Tensor],
                        index: torch.Tensor | None = None) -> str:
        """As one process does, with every process agreeing on each term (their collectives stay in step)."""
        self._through_ddp = False
        try:
            set_device_rng_state(rng_before)
            out = self.forward(x, self.step, index=index)
            params = [p for p in self._parameters if p.requires_grad]
            for label, value in out.active_values.items():
                if not value.requires_grad:
                    continue
                grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
                bad = any(g is not None and not bool(torch.isfinite(g).all()) for g in grads)
                if self.process.max_of(int(bad)):
                    return label
        except ProcessGroupLost:
            raise
        except Exception:  # never let the diagnosis hide the divergence itself
            pass
        finally:
            self._through_ddp = True
        return "(the weighted sum)"

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        state = super().checkpoint_state()
        state["processes"] = self.process.world_size
        state["rng_ranks"] = self._rng_ranks
        return state

    def save_checkpoint(self) -> None:
        """Every process hands rank 0 its random state; rank 0 writes the checkpoint."""
        self._rng_ranks = self.process.all_objects(rng_state())
        if self.process.is_main:
            super().save_checkpoint()
            return
        blame = self._nonfinite_parameters()
        if blame is not None:
            raise blame
        self.checkpoint_step = self.step

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)  # rank 0's random state (that of one process)
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.process.world_size:
            set_rng_state(ranks[self.process.rank])
        elif not self.process.is_main:  # written by another number of processes: a fresh stream
            torch.manual_seed(rank_seed(self.recipe.train.seed, self.process.rank, self.step))

    # -- the run ----------------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> TrainResult:
        try:
            self.rd.write_status(processes=self.process.world_size)
            return super().run(resume=resume)
        except ProcessGroupLost as exc:
            raise self._peer_stopped(exc) from exc

    def _peer_stopped(self, exc: ProcessGroupLost) -> RunError:
        rd = self.rd
        if self.checkpoint_step is not None:
            kept = f"the checkpoint of step {self.checkpoint_step} in {rd.path} is intact"
        else:
            kept = "no checkpoint had been written yet (a resume starts again from step 0)"
        error = _lost(exc, self.process, f"; training stopped at step {self.step} of {self.total_steps}; {kept}; "
                                         f"continue with: imae-kit run --resume {rd.path} (under torchrun with "
                                         f"any number of processes, or in one)")
        try:
            rd.write_status(status="stopped", step=self.step, stop_reason=str(error))
        except DiskWriteError:
            pass
        return error
