"""The main recipes still train and evaluate: each with its own networks, objective, precision and [train]
settings, on the built-in toy data set for a few steps, through the command line, then evaluated."""

from __future__ import annotations

import json

import pytest

from conftest import RECIPES, invoke_cli

MAIN = ["imae_dsprites", "imae_mnist", "imae_fashion_mnist", "beta_tcvae_dsprites", "beta_vae_dsprites"]


@pytest.mark.parametrize("name", MAIN)
def test_a_main_recipe_trains_and_evaluates_on_toy_data(tmp_path, name, one_thread):
    out = tmp_path / "run"
    sets = ['data={ name = "toy_shapes" }', "train.batch_size=49", "train.log_every=2",
            "eval.entropy_samples=200", "eval.mig_samples=200", "eval.figures=false", "train.eval_every=3",
            "train.eval_points=60", "train.eval_samples=50"]
    result = invoke_cli("run", RECIPES / f"{name}.toml", "--steps", "4", "--out", out, "-q",
                        *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["accuracy"]["accuracy"] > 0 and evaluation["mig"]["z_only"]["score"] >= 0
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "completed" and status["step"] == 4
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval" in r] == [3, 4]
