"""The training loop: seeded, repeatable, resumable, with a progress bar and a log of every term.

A run is a function of (recipe, seed): the data order of epoch e is a permutation drawn from a
generator seeded with (seed, e), the model is initialised after ``torch.manual_seed(seed)``, and the
checkpoint holds every RNG state, so a resumed run continues bit for bit where it stopped.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from typing import Any

import attrs
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TextColumn

from imae_kit import distributed
from imae_kit.data.base import ArrayDataset, DataSplits
from imae_kit.data.order import index_batches, steps_per_epoch
from imae_kit.denormals import denormal_mode
from imae_kit.errors import DiskWriteError, DivergenceError, RunError
from imae_kit.memory import keep_freed_memory
from imae_kit.model import HybridAutoencoder, build_model
from imae_kit.objective import NonFiniteTermError, Objective, ObjectiveOutput
from imae_kit.precision import compute_dtype, resolve_precision, step_autocast
from imae_kit.progress import progress
from imae_kit.recipe.spec import Recipe
from imae_kit.runs import RunDir, atomic_torch_save
from imae_kit.step import Step
from imae_kit.training.divergence import (blame_gradient, divergence_message, nonfinite_encoder_output,
                                          nonfinite_parameters)
from imae_kit.training.setup import build_optimizer, load_data, resolve_device, total_steps
from imae_kit.training.monitor import TrainingMonitor
from imae_kit.training.tracking import TensorBoardLog, summary_writer_class
from imae_kit.training.signals import StopFlag, graceful_stop
from imae_kit.training.state import CHECKPOINT_FORMAT, device_rng_state, rng_state, seed_everything, set_rng_state


@attrs.frozen
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: RunDir
    status: str
    steps: int
    total_steps: int
    seconds: float
    final: dict[str, Any]
    stop_signal: int | None = None  # the signal that stopped an interrupted run (SIGINT or SIGTERM)


class Trainer:
    """Trains a recipe's model on its data, writing everything into a run directory.

    Building a Trainer touches no file (data, model, objective and optimiser are checked first), so
    ``run`` can refuse a bad recipe before it creates a run directory; set ``run_dir`` before ``run()``.
    """

    def __init__(self, recipe: Recipe, run_dir: RunDir | None, *, steps: int | None = None, progress: bool = True,
                 console: Console | None = None, splits: DataSplits | None = None):
        self.recipe = recipe
        self.run_dir = run_dir
        self.console = console or Console(stderr=True)
        self.progress_enabled = progress
        self.device = resolve_device(recipe.train.device)
        self.precision = resolve_precision(recipe.train.precision, self.device)
        keep_freed_memory()  # large CPU tensors reuse their pages from step to step (imae_kit.memory)
        # subnormal floats: flushed by the imae-kit command, or by the caller (imae_kit.denormals); recorded
        self.denormals = denormal_mode() if self.device.type == "cpu" else "n/a"
        if self.denormals == "partial":
            self.console.print("[yellow]warning:[/] some of torch's threads keep subnormal floats (they existed "
                               "before flush_denormals was called), so steps can be up to 1.5x slower; call "
                               "imae_kit.denormals.flush_denormals() before any torch work", highlight=False,
                               soft_wrap=True)
        self.splits = splits if splits is not None else load_data(recipe)
        self.train_set: ArrayDataset = self.splits.train
        if self.device.type == "cuda" and hasattr(self.train_set, "to_device"):
            self.train_set = self.train_set.to_device(self.device)  # dSprites: packed on the GPU, unpacked there
        n = len(self.train_set)
        if steps_per_epoch(n, recipe.train.batch_size) == 0:
            raise RunError(f"{recipe.source}: train.batch_size = {recipe.train.batch_size} is larger than the "
                           f"training set ({n} examples); lower it")
        self.steps_per_epoch = steps_per_epoch(n, recipe.train.batch_size)
        self.total_steps = steps if steps is not None else total_steps(recipe, n)
        seed_everything(recipe.train.seed)
        try:
            self.model: HybridAutoencoder = build_model(recipe.model, self.train_set.image_shape).to(self.device)
        except (RuntimeError, MemoryError, OverflowError) as exc:  # sizes no machine can allocate
            raise RunError(f"{recipe.source}: [model] cannot be built ({type(exc).__name__}: {str(exc)[:200]}); "
                           f"check latent_continuous, latent_discrete and the hidden widths") from None
        self.model.set_precision(self.precision)
        self.objective = Objective.from_spec(recipe.objective.in_steps(self.steps_per_epoch))
        for weighted in self.objective.terms:  # a term's one-off work on the data, refused before any file
            prepare = getattr(weighted.term, "prepare", None)
            if callable(prepare):
                prepare(self.train_set)
        if recipe.train.tensorboard:
            summary_writer_class()  # refuse a missing tensorboard package before anything is written
        self.tracker: TensorBoardLog | None = None
        t = recipe.train
        self.monitor = (TrainingMonitor(getattr(self.splits, t.eval_split), points=t.eval_points,
                                        samples=t.eval_samples, seed=t.seed) if t.eval_every else None)
        self.optimizer, self.scheduler = build_optimizer(recipe, self.model)
        self._parameters = list(self.model.parameters())  # walked once, not on every step
        self.step = 0
        self.checkpoint_step: int | None = None
        self._resume_prepared = False
        self.resumed_from: str | None = None  # the checkpoint file a resume continued from
        self._keep_previous = True  # False while checkpoint.pt is a damaged file that must not become .prev
        self._seconds_before = 0.0
        self._started = time.perf_counter()

    @property
    def rd(self) -> RunDir:
        """The run directory (it must have been set before training)."""
        if self.run_dir is None:
            raise RuntimeError("Trainer.run_dir must be set before run()")
        return self.run_dir

    def seconds(self) -> float:
        """Training seconds so far, over every segment of a resumed run."""
        return self._seconds_before + time.perf_counter() - self._started

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
        }

    def save_checkpoint(self) -> None:
        """Atomically replace the run's checkpoint with the current state (and note it in run.json).

        Parameters or buffers that are no longer finite (an update that overflowed) are never saved:
        that raises NonFiniteTermError, so the checkpoint on disk stays the last good one."""
        blame = self._nonfinite_parameters()
        if blame is not None:
            raise blame
        self.rd.sync_metrics()
        atomic_torch_save(self.checkpoint_state(), self.rd.checkpoint_path,
                          keep_previous=self.rd.previous_checkpoint_path if self._keep_previous else None)
        self._keep_previous = True
        self.checkpoint_step = self.step
        self.rd.write_status(checkpoint_step=self.step, train_seconds=self.seconds())

    def restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint's model, optimiser, scheduler, RNG states and step.

        The optimiser's settings are the recipe's, not the checkpoint's: a resume that changed train.lr,
        lr_decay, momentum or weight_decay (with --allow-change) trains on with the new values (the lr as
        lr * lr_decay ** epoch), and one that changed train.optimizer starts that optimiser afresh."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise RunError(f"{self.rd.checkpoint_path}: unknown checkpoint format {state.get('format')!r}")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise RunError(f"{self.rd.checkpoint_path} does not fit the recipe's [model] "
                           f"({str(exc).splitlines()[-1].strip()[:160]}); the model's shape cannot change when "
                           f"resuming: start a new run instead") from None
        same_optimizer = state.get("optimizer_class", type(self.optimizer).__name__) == type(self.optimizer).__name__
        if same_optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_recipe_hyperparameters(force_lr=not same_optimizer)
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.checkpoint_step = self.step

    def _apply_recipe_hyperparameters(self, force_lr: bool) -> None:
        t, groups = self.recipe.train, self.optimizer.param_groups
        if force_lr or self.scheduler.gamma != t.lr_decay or any(g.get("initial_lr") != t.lr for g in groups):
            # unchanged values keep the restored lr bit for bit; changed ones restart the decay's closed form
            self.scheduler.gamma = t.lr_decay
            self.scheduler.base_lrs = [t.lr for _ in groups]
            for g in groups:
                g["initial_lr"] = t.lr
                g["lr"] = t.lr * t.lr_decay ** self.scheduler.last_epoch
            self.scheduler._last_lr = [g["lr"] for g in groups]
        for g in groups:
            g["weight_decay"] = t.weight_decay
            if "momentum" in g:
                g["momentum"] = t.momentum

    # -- the loop ----------------------------------------------------------------------------

    def prepare_resume(self) -> None:
        """Restore the run's checkpoint (if there is one) and check the budget against it; writes nothing,
        so a resume that cannot go on is refused before any file changes. ``run(resume=True)`` calls it."""
        if self._resume_prepared:
            return
        rd = self.rd
        newest = rd.load_newest_checkpoint(map_location=self.device)  # checkpoint.pt, else checkpoint.prev.pt
        if newest is not None:
            state, used, damaged = newest
            self.restore(state)
            self.resumed_from, self._keep_previous = used.name, not damaged
            for _, why in damaged:
                self.console.print(f"[yellow]warning:[/] {escape(why)}", highlight=False, soft_wrap=True)
            self.console.print(f"resuming {escape(str(rd.path))} from {used.name} (step {self.step})",
                               highlight=False, soft_wrap=True)
        if rd.read_status().get("status") == "completed" and self.step >= self.total_steps:
            raise RunError(f"{rd.path} already completed {self.step} steps; to train further pass --steps N "
                           f"(more than {self.step}) with --allow-change train.steps")
        if self.step > self.total_steps:
            raise RunError(f"{rd.path}: the checkpoint is at step {self.step}, past the budget of "
                           f"{self.total_steps} steps; pass --steps N with N >= {self.step}")
        self._resume_prepared = True

    def make_step(self, x: torch.Tensor, step: int, index: torch.Tensor | None = None) -> Step:
        """Encode, sample and decode one batch into the Step every term reads (``index``: the batch's rows of
        the training set, when known)."""
        posterior = self.model.encode(x)
        samples = self.model.sample_latents(posterior)
        likelihood = self.model.decode(samples.y, samples.z)
        return Step(x=x, posterior=posterior, samples=samples, likelihood=likelihood, encode=self.model.encode,
                    dataset_size=len(self.train_set), step=step, precision=self.model.precision,
                    index=index, data=self.train_set)

    def forward(self, x: torch.Tensor, step: int, *, log: bool = False,
                index: torch.Tensor | None = None) -> ObjectiveOutput:
        """The objective of one batch: the Step and every weighted term, in one autocast region under bf16
        (so each weight is cast to bf16 once for all the step's passes). ``index``: the batch's rows of the
        training set (the training loop passes them; a term that needs them says so)."""
        with step_autocast(self.device.type, compute_dtype(self.precision)):
            return self.objective(self.make_step(x, step, index), log=log)

    # -- what training over several processes (imae_kit.training.processes) changes ----------------

    def _local_indices(self, index: torch.Tensor) -> torch.Tensor:
        """This process's examples of a global batch (all of them here)."""
        return index

    def _global_output(self, out: ObjectiveOutput) -> ObjectiveOutput:
        """The step's loss and term values over the global batch (this process's, here)."""
        return out

    def _stop_requested(self, flag: StopFlag) -> bool:
        """Whether to stop after this step (every process agrees, when there are several)."""
        return flag.requested

    def _monitor_record(self) -> dict[str, Any]:
        """The train.eval_every measurements of the current model."""
        return self.monitor(self.model)

    def run(self, *, resume: bool = False) -> TrainResult:
        """Train (see ``_run``); a write the disk refuses stops the run: run.json says "stopped" and why (if it
        can still be written) and the DiskWriteError says what is intact and how to continue."""
        try:
            return self._run(resume=resume)
        except DiskWriteError as exc:
            raise self._stopped_by_disk(exc) from exc

    def _stopped_by_disk(self, exc: DiskWriteError) -> DiskWriteError:
        rd = self.rd
        if self.checkpoint_step is not None and rd.checkpoint_files():
            kept = f"the checkpoint of step {self.checkpoint_step} in {rd.path} is intact"
        else:
            kept = "no checkpoint had been written yet (a resume starts again from step 0)"
        advice = (f"training stopped at step {self.step} of {self.total_steps}; {kept}. Free space (or fix the "
                  f"permissions), then continue with: imae-kit run --resume {rd.path}")
        try:
            rd.write_status(status="stopped", step=self.step, train_seconds=self.seconds(),
                            stop_reason=f"{exc.describe()}; {advice}", finished=time.time())
        except DiskWriteError as again:
            advice += f" (run.json could not record the stop either: {again.reason}; it still says 'running')"
        return exc.advise(advice)

    def _run(self, *, resume: bool = False) -> TrainResult:
        """Train to the budget (or on from the checkpoint, with ``resume``); return what happened.

        The loop checkpoints every ``train.checkpoint_every`` steps and at the end; metrics.jsonl lines
        are appended before the checkpoint that covers them, and a resume drops the lines past the
        checkpoint, so a kill at any instant neither loses nor repeats a logged step."""
        rd = self.rd
        last_records: dict[str, Any] = {}
        if resume:
            self.prepare_resume()
            before = rd.read_status()
            rd.remove_stale_temp_files()
            rd.truncate_metrics(self.step)
            kept = rd.read_metrics()
            last_records = kept[-1] if kept else {}
            if self.checkpoint_step is not None:
                self._seconds_before = float(before.get("train_seconds", 0.0))
            rd.write_status(resumed_at=list(before.get("resumed_at", [])) + [self.step], resumed_from=self.resumed_from)
            if "created" not in before:
                rd.write_status(name=self.recipe.name, source=self.recipe.source, created=time.time())
        else:
            rd.write_status(name=self.recipe.name, source=self.recipe.source, created=time.time())
            if rd.metrics_path.exists():
                rd.metrics_path.unlink()
        self._started = time.perf_counter()
        rd.write_status(status="running", step=self.step, total_steps=self.total_steps, precision=self.precision,
                        denormals=self.denormals,
                        device=str(self.device),
                        checkpoint_step=self.checkpoint_step, stop_reason=None, diverged_term=None, pid=os.getpid())
        flag = StopFlag()
        if self.recipe.train.tensorboard and distributed.current().is_main:
            self.tracker = TensorBoardLog(rd.path)
        self.model.train()
        clip = self.recipe.train.grad_clip
        ckpt_every = self.recipe.train.checkpoint_every
        log_every = self.recipe.train.log_every
        eval_every = self.recipe.train.eval_every
        status = "completed"
        with self._progress() as bar, graceful_stop(flag):
            task = bar.add_task("train", total=self.total_steps, completed=self.step, epoch=0, info="")
            batches = index_batches(self.recipe.train.seed, len(self.train_set), self.recipe.train.batch_size,
                                    self.step)
            while self.step < self.total_steps:
                epoch, index = next(batches)
                while self.scheduler.last_epoch < epoch:  # per-epoch learning-rate decay
                    with warnings.catch_warnings():
                        # the decay is stepped as each epoch begins, before its first optimizer step; after
                        # a resume at an epoch boundary torch warns about that order, which is intended here
                        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                        self.scheduler.step()
                local = self._local_indices(index)
                x = self.train_set.get_batch(local).x.to(self.device, non_blocking=True)
                log = self.step == 0 or (self.step + 1) % log_every == 0 or self.step + 1 == self.total_steps
                watch = self.monitor is not None and ((self.step + 1) % eval_every == 0
                                                      or self.step + 1 == self.total_steps)
                log = log or watch
                rng_before = device_rng_state(self.device)
                check = log or self.device.type != "cuda"  # on a GPU the host syncs of the checks wait for logging
                try:
                    out = self.forward(x, self.step, log=log, index=local)
                    shown = self._global_output(out) if check else out  # over all processes, when several
                    if check:
                        self.objective.check_finite(shown, self.step)
                    self.optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    self._clip_and_check_gradients(clip, x, rng_before, check=check, index=local)
                except (NonFiniteTermError, ValueError) as exc:
                    # weights that an earlier update made non-finite are the cause, whatever failed now;
                    # torch.distributions refuses non-finite parameters with a ValueError
                    blame = self._nonfinite_parameters() or nonfinite_encoder_output(self.model, x, self.step)
                    if isinstance(exc, ValueError) and blame is None:
                        raise
                    self._diverged(blame if blame is not None else exc)
                self.optimizer.step()
                self.step += 1
                if log:
                    record = {"step": self.step, "epoch": epoch, "loss": float(shown.loss.detach()),
                              "lr": self.optimizer.param_groups[0]["lr"],
                              "terms": {k: r.as_dict() for k, r in shown.records.items()}}
                    if watch:
                        record["eval"] = self._monitor_record()
                    rd.append_metrics(record)
                    if self.tracker is not None:
                        self.tracker.log_step(record)
                    last_records = record
                    bar.update(task, completed=self.step, epoch=epoch, info=self._info(record))  # off a tty: a line
                bar.update(task, completed=self.step, epoch=epoch)
                if ckpt_every and self.step % ckpt_every == 0 and self.step < self.total_steps:
                    self._checkpoint_or_diverge()
                if self._stop_requested(flag) and self.step < self.total_steps:
                    status = "interrupted"
                    break
            if self.checkpoint_step != self.step:
                self._checkpoint_or_diverge()
        if self.tracker is not None:
            self.tracker.close()
        seconds = self.seconds()
        reason = None
        if status == "interrupted":
            reason = (f"interrupted by {flag.name} at step {self.step} of {self.total_steps}; "
                      f"continue with: imae-kit run --resume {rd.path}")
        rd.write_status(status=status, step=self.step, train_seconds=seconds, stop_reason=reason, finished=time.time())
        final = {k: v for k, v in last_records.get("terms", {}).items()}
        rd.write_json("summary.json", {"status": status, "step": self.step, "total_steps": self.total_steps,
                                       "train_seconds": seconds, "loss": last_records.get("loss"), "terms": final})
        return TrainResult(run_dir=rd, status=status, steps=self.step, total_steps=self.total_steps,
                           seconds=seconds, final=last_records,
                           stop_signal=flag.signum if status == "interrupted" else None)

    def _checkpoint_or_diverge(self) -> None:
        try:
            self.save_checkpoint()
        except NonFiniteTermError as exc:
            self._diverged(exc)

    def _clip_and_check_gradients(self, clip: float, x: torch.Tensor, rng_before: dict[str, torch.Tensor],
                                  check: bool = True, index: torch.Tensor | None = None) -> None:
        """Clip the gradient's global L2 norm to ``clip`` (0: no clipping), as torch.nn.utils.clip_grad_norm_
        does; with ``check``, raise NonFiniteTermError naming the term whose gradient is not finite (a
        non-finite update that goes unchecked is caught at the next check, by its weights)."""
        params = [p for p in self._parameters if p.grad is not None]
        if not check:
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, max_norm=clip)
            return
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm=clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if math.isfinite(float(norm)):
            return
        names = {p: n for n, p in self.model.named_parameters()}
        where = next((names[p] for p in params if not torch.isfinite(p.grad).all()), "?")
        label = self._blame_gradient(x, rng_before, index)
        raise NonFiniteTermError(label, float(norm), self.step, quantity="gradient", where=where)

    def _blame_gradient(self, x: torch.Tensor, rng_before: dict[str, torch.Tensor],
                        index: torch.Tensor | None = None) -> str:
        """The term whose gradient is not finite, by recomputing the step (imae_kit.training.divergence)."""
        return blame_gradient(functools.partial(self.forward, index=index), self._parameters, x, self.step,
                              rng_before)

    def _nonfinite_parameters(self) -> NonFiniteTermError | None:
        return nonfinite_parameters(self.model, self.step)

    def _diverged(self, exc: NonFiniteTermError) -> None:
        rd = self.rd
        message = divergence_message(exc, self.checkpoint_step, rd.checkpoint_path)
        rd.write_status(status="diverged", step=exc.step, train_seconds=self.seconds(), stop_reason=message,
                        diverged_term=exc.label, finished=time.time())
        raise DivergenceError(message)

    def _progress(self) -> Progress:
        return progress(enabled=self.progress_enabled, counts=True, bar_width=24, out=self.console,
                        middle=[TextColumn("epoch {task.fields[epoch]}")],
                        tail=[TextColumn("{task.fields[info]}", markup=False)],
                        line_on="info", rate=("images/s", self.recipe.train.batch_size))

    @staticmethod
    def _info(record: dict[str, Any]) -> str:
        parts = [f"loss {record['loss']:.4g}"]
        for label, r in record["terms"].items():
            parts.append(f"{label} {r['value']:.3g}")
        for key in ("accuracy", "mig_z"):
            if (record.get("eval") or {}).get(key) is not None:
                parts.append(f"{key} {record['eval'][key]:.3f}")
        return " | ".join(parts)
