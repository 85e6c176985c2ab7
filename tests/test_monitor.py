"""train.eval_every: learning curves of the evaluation numbers, without changing the training."""

from __future__ import annotations

import itertools

import pytest
import torch

from imae_kit.metrics.total_correlation import total_correlation
from imae_kit.recipe import load_recipe
from imae_kit.runs import RunDir, load_checkpoint
from imae_kit.training import Trainer

from conftest import RECIPES, TOY_OVERRIDES


def _run(tmp_path, name: str, *extra: str) -> Trainer:
    recipe = load_recipe(RECIPES / "imae_dsprites.toml", overrides=[*TOY_OVERRIDES, *extra], steps=40)
    trainer = Trainer(recipe, RunDir.create("t", out=tmp_path / name), progress=False)
    trainer.run()
    return trainer


def test_the_curves_are_logged_and_training_is_unchanged(tmp_path, one_thread):
    watched = _run(tmp_path, "watched", "train.eval_every=15", "train.eval_points=100", "train.eval_samples=50")
    plain = _run(tmp_path, "plain")
    a, b = load_checkpoint(tmp_path / "watched" / "checkpoint.pt"), load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    records = [r for r in watched.rd.read_metrics() if "eval" in r]
    assert [r["step"] for r in records] == [15, 30, 40]
    last = records[-1]["eval"]
    assert last["points"] == 100 and {"accuracy", "nmi", "mutual_information_y", "mig_z", "mig_with_y"} <= set(last)
    gaps = last["mig_gaps"]  # the toy glyphs' factors less the label (shape): the MIG is the mean of the gaps
    assert set(gaps) == {"posY", "posX"} and abs(sum(gaps.values()) / len(gaps) - last["mig_z"]) < 1e-12

    # the accuracy and I(x;y) of the subset, recomputed by brute force from the final model
    model, monitor = watched.model.eval(), watched.monitor
    batch = monitor.dataset.get_batch(monitor.index)
    with torch.no_grad():
        probs = model.encode(batch.x).probs.double()
    predicted = probs.argmax(1)
    best = max(sum(int(perm[int(p)] == int(y)) for p, y in zip(predicted, batch.labels))
               for perm in itertools.permutations(range(3))) / len(predicted)
    assert abs(last["accuracy"] - best) < 1e-12
    mean = probs.mean(0)
    mi = float(-(mean * mean.log()).sum() + (probs * probs.clamp_min(1e-300).log()).sum(1).mean())
    assert abs(last["mutual_information_y"] - mi) < 1e-9

    # the TC: the final evaluation's estimator on the subset's posteriors, recomputed from the final model
    with torch.no_grad():
        post = model.encode(batch.x)
    again = total_correlation(post.mu.float(), post.sigma.float(), num_samples=50, mixture_size=10_000,
                              generator=torch.Generator().manual_seed(watched.recipe.train.seed + 1))
    assert last["total_correlation"] == pytest.approx(again.value, abs=1e-6)


def test_eval_split_train_measures_the_curves_on_training_images(tmp_path, one_thread):
    """train.eval_split = "train" draws the subset from the training split (to choose defaults without the test
    split); the default stays the evaluation split."""
    recipe = load_recipe(RECIPES / "imae_dsprites.toml", steps=1,
                         overrides=[*TOY_OVERRIDES, "train.eval_every=1", "train.eval_points=50",
                                    'train.eval_split="train"'])
    trainer = Trainer(recipe, RunDir.create("t", out=tmp_path / "a"), progress=False)
    default = Trainer(load_recipe(RECIPES / "imae_dsprites.toml", steps=1,
                                  overrides=[*TOY_OVERRIDES, "train.eval_every=1", "train.eval_points=50"]),
                      RunDir.create("t", out=tmp_path / "b"), progress=False)
    assert trainer.monitor.dataset is trainer.splits.train
    assert default.monitor.dataset is default.splits.test
    assert len(trainer.splits.train) != len(trainer.splits.test)
