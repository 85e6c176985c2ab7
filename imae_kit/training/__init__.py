"""Training: the loop, its state, its stops, resumes and the run orchestration.

    trainer.py   the Trainer: steps, checkpoints, divergence forensics
    state.py     RNG states and seeding (what a checkpoint holds besides the weights)
    setup.py     device, data, budget and optimiser of a recipe
    signals.py   Ctrl-C / SIGTERM stop training between steps
    resume.py    how a recipe differs from the one a run directory keeps
    run.py       ``run``: check everything, create the run directory, train, evaluate
"""

from imae_kit.data.order import epoch_permutation, index_batches, steps_per_epoch
from imae_kit.training.resume import check_same_recipe, recipe_changes, resolved_recipe_text
from imae_kit.training.run import RunOutcome, evaluate_run, run, train_recipe
from imae_kit.training.setup import build_optimizer, load_data, resolve_device, total_steps
from imae_kit.training.trainer import Trainer, TrainResult

__all__ = ["RunOutcome", "TrainResult", "Trainer", "build_optimizer", "check_same_recipe", "epoch_permutation",
           "evaluate_run", "index_batches", "load_data", "recipe_changes", "resolve_device", "resolved_recipe_text",
           "run", "steps_per_epoch", "total_steps", "train_recipe"]
