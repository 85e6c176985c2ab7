"""Running a recipe: refuse what cannot work before writing anything, train into a run directory, evaluate."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from rich.console import Console

from imae_kit.data.base import DataSplits
from imae_kit.errors import DiskWriteError, RunError
from imae_kit.evaluation import check_metrics, evaluate
from imae_kit.metrics.settings import EvalSettings
from imae_kit.model import HybridAutoencoder, build_model
from imae_kit.recipe import Recipe, load_recipe
from imae_kit.runs import RunDir, atomic_write_text, load_checkpoint
from imae_kit.training.resume import allowed_change, recipe_changes, resolved_recipe_text, show_change
from imae_kit.precision import resolve_precision
from imae_kit.training.processes import create_run_dir, is_main_process, join_processes, make_trainer, open_run_dir
from imae_kit.training.setup import load_data, resolve_device
from imae_kit.training.tracking import TensorBoardLog
from imae_kit.training.trainer import Trainer, TrainResult


@attrs.frozen
class RunOutcome:
    """A finished ``run``: the training result and, if evaluated, the evaluation dict."""

    train: TrainResult
    evaluation: dict[str, Any] | None


OPTIONS = "options"  # run.json's record of the run's own command-line choices


def run_options(recorded: Any, *, evaluate: bool | None = None, progress: bool | None = None,
                threads: int | None = None) -> dict[str, Any]:
    """The choices a run is trained with: each one given now, else the one ``recorded`` in run.json when it
    was started (or last resumed), else the default (evaluate, progress bars, torch's thread count)."""
    rec = recorded if isinstance(recorded, dict) else {}
    saved_threads = rec.get("threads")
    return {"evaluate": bool(rec.get("evaluate", True)) if evaluate is None else bool(evaluate),
            "quiet": bool(rec.get("quiet", False)) if progress is None else not progress,
            "threads": threads if threads is not None else (saved_threads if isinstance(saved_threads, int)
                                                              and saved_threads >= 1 else None)}


def _use_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def run(recipe_path: str | None, *, overrides: tuple[str, ...] = (), out: str | None = None,
        steps: int | None = None, resume: str | None = None, allow_changes: tuple[str, ...] = (),
        evaluate: bool | None = None, progress: bool | None = None, threads: int | None = None,
        console: Console | None = None, runs_base: str = "runs") -> RunOutcome:
    """Train a recipe into a new run directory (or continue one with ``resume``), then evaluate it.

    ``evaluate``, ``progress`` and ``threads`` (torch CPU threads) are recorded in run.json; a resume that
    leaves one as None reuses the run's recorded choice (a run started without evaluation is not evaluated
    when it is resumed). Everything that can be checked (recipe, data, model, budget, a resume's recipe
    changes) is checked before anything is written: a refused run leaves no new directory and no changed file.
    Under torchrun every process calls it; rank 0 writes the run directory (imae_kit.training.processes)."""
    join_processes()
    console = console or Console(stderr=True)
    if allow_changes and resume is None:
        raise RunError("--allow-change only applies when continuing a run: add --resume RUN_DIR")
    if out is not None and resume is not None:
        raise RunError(f"--out and --resume both name a run directory; a resume continues {resume} in place, "
                       f"so drop --out")
    if resume is not None:
        rd = open_run_dir(resume)
        if recipe_path is None and any(o.split("=", 1)[0].strip().split(".")[0] == "vars" for o in overrides):
            raise RunError(f"{rd.recipe_path} is resolved (its ${{vars}} are already substituted), so --set vars.* "
                           f"would change nothing; pass the original recipe file: imae-kit run RECIPE --resume "
                           f"{rd.path} --set ...")
        with rd.locked():
            status = rd.read_status()
            options = run_options(status.get(OPTIONS), evaluate=evaluate, progress=progress, threads=threads)
            _use_threads(options["threads"])
            progress = not options["quiet"]
            saved_text = rd.recipe_path.read_text(encoding="utf-8")
            recipe = load_recipe(recipe_path or rd.recipe_path, overrides, steps=steps)
            changes = recipe_changes(saved_text, recipe, str(rd.recipe_path))
            refused = [c for c in changes if not allowed_change(c[0], allow_changes)]
            if refused:
                flags = " ".join(f"--allow-change {key}" for key, _, _ in refused)
                raise RunError(f"cannot resume {rd.path}: the recipe differs in "
                               f"{', '.join(show_change(*c) for c in refused)}; resume with the same recipe, "
                               f"or allow the change explicitly with {flags}")
            trainer = make_trainer(recipe, rd, progress=progress, console=console)
            if options["evaluate"]:  # an [eval] metric the data cannot serve is refused before anything trains
                check_metrics(EvalSettings(**dict(recipe.eval)), trainer.splits)
            trainer.prepare_resume()  # restores the checkpoint into the recipe's model: refusals come first
            done = trainer.step
            if changes and is_main_process():
                atomic_write_text(rd.recipe_path, resolved_recipe_text(recipe))
                history = list(status.get("changed_on_resume", []))
                history.append({"step": done, "fields": {k: [old, new] for k, old, new in changes}})
                rd.write_status(changed_on_resume=history)
            if status.get(OPTIONS) != options:
                rd.write_status(**{OPTIONS: options})
            result = trainer.run(resume=True)
            evaluation = _evaluate_if_done(rd, trainer, result, options["evaluate"], progress)
        return RunOutcome(train=result, evaluation=evaluation)
    if recipe_path is None:
        raise RunError("give a recipe file, or --resume RUN_DIR")
    options = run_options(None, evaluate=evaluate, progress=progress, threads=threads)
    _use_threads(options["threads"])
    recipe = load_recipe(recipe_path, overrides, steps=steps)
    return train_recipe(recipe, out=out, evaluate=options["evaluate"], progress=not options["quiet"],
                        console=console, runs_base=runs_base, threads=options["threads"])


def train_recipe(recipe: Recipe, *, out: str | None = None, evaluate: bool = True, progress: bool = True,
                 console: Console | None = None, runs_base: str = "runs", threads: int | None = None) -> RunOutcome:
    """Train a loaded recipe into a new run directory (``out``, else ``runs_base/NAME``), then evaluate it;
    run.json records ``evaluate``, ``progress`` and ``threads`` for a later ``run(resume=...)``."""
    trainer = make_trainer(recipe, None, progress=progress, console=console or Console(stderr=True))
    if evaluate:  # an [eval] metric the data cannot serve is refused before the run directory exists
        check_metrics(EvalSettings(**dict(recipe.eval)), trainer.splits)
    rd = create_run_dir(recipe.name, out=out, base=runs_base, recipe_text=resolved_recipe_text(recipe))
    with rd.locked():
        rd.write_status(**{OPTIONS: run_options(None, evaluate=evaluate, progress=progress, threads=threads)})
        trainer.run_dir = rd
        result = trainer.run()
        evaluation = _evaluate_if_done(rd, trainer, result, evaluate, progress)
    return RunOutcome(train=result, evaluation=evaluation)


def _evaluate_if_done(rd: RunDir, trainer: Trainer, result: TrainResult, evaluate: bool,
                      progress: bool) -> dict[str, Any] | None:
    if not (evaluate and result.status == "completed" and is_main_process()):  # rank 0 evaluates
        return None
    evaluation = evaluate_run(rd, recipe=trainer.recipe, model=trainer.model, splits=trainer.splits,
                              progress=progress, train_seconds=result.seconds)
    if trainer.recipe.train.tensorboard:
        tracker = TensorBoardLog(rd.path)
        tracker.log_evaluation(evaluation, result.steps, rd.path)
        tracker.close()
    return evaluation


def evaluate_run(rd: RunDir, *, recipe: Recipe | None = None, model: HybridAutoencoder | None = None,
                 splits: DataSplits | None = None, progress: bool = True,
                 train_seconds: float | None = None) -> dict[str, Any]:
    """Evaluate a run directory's model (loading it from the checkpoint if not given); write eval.json etc."""
    if recipe is None:
        recipe = load_recipe(rd.recipe_path)
    if splits is None:
        splits = load_data(recipe)
    if model is None:
        device = resolve_device(recipe.train.device)
        model = build_model(recipe.model, splits.train.image_shape)
        model.load_state_dict(load_checkpoint(rd.checkpoint_path)["model"])
        model.to(device).set_precision(resolve_precision(recipe.train.precision, device))
    if train_seconds is None:
        train_seconds = rd.read_status().get("train_seconds")
    settings = EvalSettings(**dict(recipe.eval))
    line = f"{recipe.name}: {recipe.objective_formula()}  [data {recipe.data.name}, seed {recipe.train.seed}]"
    device = next(model.parameters()).device
    try:
        return evaluate(model.to(device), splits, out_dir=rd.path, settings=settings, metrics_path=rd.metrics_path,
                        progress=progress, recipe_line=line, train_seconds=train_seconds)
    except DiskWriteError as exc:
        raise exc.advise(f"the evaluation stopped; the trained model ({rd.checkpoint_path}) is untouched; free "
                         f"space (or fix the permissions), then evaluate with: imae-kit eval {rd.path}") from exc
