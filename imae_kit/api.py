"""The Python API for notebooks: load a recipe, train it, load a run, evaluate it.

    from imae_kit import load_recipe, train, load_run, evaluate
    recipe = load_recipe("recipes/imae_mnist.toml", overrides=["vars.beta=8"], steps=200)
    run = train(recipe, out="runs/notebook")          # a Run: recipe, model (eval mode), evaluation, metrics
    again = load_run("runs/notebook")                  # the same, read back from the run directory
    evaluation = evaluate(again)                       # re-evaluate: eval.json, figures/, report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch

from imae_kit.model import HybridAutoencoder, build_model
from imae_kit.precision import resolve_precision
from imae_kit.recipe import Recipe, load_recipe
from imae_kit.runs import EVAL_FILE, RunDir, load_checkpoint
from imae_kit.training import evaluate_run, train_recipe
from imae_kit.training.setup import load_data

__all__ = ["Run", "evaluate", "load_recipe", "load_run", "train"]


@attrs.frozen
class Run:
    """A run directory read back: its recipe, its model (eval mode), its evaluation and its logged metrics."""

    path: Path
    recipe: Recipe
    model: HybridAutoencoder
    evaluation: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    status: dict[str, Any]


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory: recipe.toml, the model from checkpoint.pt, eval.json (None if not evaluated), metrics."""
    rd = RunDir.open(run_dir)
    recipe = load_recipe(rd.recipe_path)
    image_shape = load_data(recipe).train.image_shape
    model = build_model(recipe.model, image_shape)
    model.load_state_dict(load_checkpoint(rd.checkpoint_path)["model"])
    model.set_precision(resolve_precision(recipe.train.precision, torch.device("cpu")))
    model.eval()
    return Run(path=rd.path, recipe=recipe, model=model, evaluation=rd.read_json(EVAL_FILE),
               metrics=rd.read_metrics(), status=rd.read_status())


def train(recipe: Recipe, *, out: str | Path | None = None, evaluate: bool = True, progress: bool = False,
          runs_base: str | Path = "runs") -> Run:
    """Train a loaded recipe into a new run directory (``out``, else ``runs/NAME``), evaluate it, return the Run."""
    outcome = train_recipe(recipe, out=None if out is None else str(out), evaluate=evaluate, progress=progress,
                           runs_base=str(runs_base))
    return load_run(outcome.train.run_dir.path)


def evaluate(run: Run, *, progress: bool = False) -> dict[str, Any]:
    """Evaluate a Run's model again (writes eval.json, figures/ and report.md) and return the evaluation."""
    return evaluate_run(RunDir.open(run.path), recipe=run.recipe, model=run.model, progress=progress)
