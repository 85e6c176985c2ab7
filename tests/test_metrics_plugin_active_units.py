"""The active-units metric plugin (plugins/active_units.py): the route a user's metric takes, from one file
loaded by a recipe's ``plugins`` list to eval.json, the headline table, report.md and a figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imae_kit.metrics import MetricContext
from imae_kit.registry import build, get, load_plugin_file

from conftest import MINIMAL_RECIPE, invoke_cli

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "active_units.py"


@pytest.fixture(scope="module", autouse=True)
def plugin():
    load_plugin_file(PLUGIN)


def test_counts_the_dimensions_whose_mean_varies():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4000, 4, generator=g) * torch.tensor([1.0, 0.05, 0.2, 0.0])   # Var = 1, 0.0025, 0.04, 0
    result = build("metric", "active_units", {})(MetricContext.for_codes(mu))
    assert result.active == ["z0", "z2"] and result.count == 2
    assert result.variance_of_means == pytest.approx(mu.double().var(0, unbiased=False).tolist(), rel=1e-9)
    strict = build("metric", "active_units", {"threshold": 0.1})(MetricContext.for_codes(mu))
    assert strict.active == ["z0"]
    assert get("metric", "active_units").result_type.from_json(result.to_json()) == result
    assert result.headline() == [("active units (Var[mu_k] > 0.01)", 2.0)]


def test_a_plugin_metric_from_a_recipe_reaches_eval_json_the_headline_and_the_report(tmp_path):
    recipe = MINIMAL_RECIPE.replace('description = "a small recipe for tests"',
                                    f'description = "a small recipe for tests"\nplugins = ["{PLUGIN}"]')
    recipe += ('\n[eval]\nentropy_samples = 200\nmetrics = ["discrete", '
               '{ name = "active_units", params = { threshold = 0.001 } }]\n')
    path = tmp_path / "recipe.toml"
    path.write_text(recipe)
    result = invoke_cli("run", path, "--out", tmp_path / "run", "--steps", "20", "-q")
    assert result.exit_code == 0, result.output
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert ev["metrics"] == {"discrete": "discrete", "active_units": "active_units"}
    assert ev["active_units"]["threshold"] == 0.001 and len(ev["active_units"]["variance_of_means"]) == 4
    assert "active units (Var[mu_k] > 0.001)" in result.output
    assert ev["figures"]["active_units"] == "figures/active_units.png"
    assert (tmp_path / "run" / "figures" / "active_units.png").is_file()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| active units (Var[mu_k] > 0.001) |" in report
    assert "### Active units: Var[mu_k] of each dimension" in report


def test_a_bad_parameter_names_the_metric_and_the_field():
    with pytest.raises(ValueError, match="parameter 'threshold'"):
        from imae_kit.metrics.settings import EvalSettings

        EvalSettings(metrics=[{"name": "active_units", "params": {"threshold": "high"}}])
