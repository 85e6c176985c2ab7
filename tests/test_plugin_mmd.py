"""The MMD plugin (plugins/mmd.py), loaded by path exactly as a recipe's ``plugins`` list loads it."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest
import torch

from helpers import make_step, posterior_step, tiny_model
from imae_kit.errors import RecipeError
from imae_kit.registry import build, get, load_plugin_file

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "mmd.py"
D64 = torch.float64


@pytest.fixture(scope="module")
def plugin():
    load_plugin_file(PLUGIN)
    return sys.modules[get("term", "mmd").__module__]


def _kernel(a, b, kernel, c):
    d2 = sum((x - y) ** 2 for x, y in zip(a, b))
    return math.exp(-d2 / c) if kernel == "rbf" else c / (c + d2)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_matches_a_brute_force_double_loop(plugin, kernel):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, generator=g, dtype=D64)
    b = torch.randn(6, 3, generator=g, dtype=D64) + 0.5
    al, bl, c = a.tolist(), b.tolist(), 2.7
    xx = sum(_kernel(al[i], al[j], kernel, c) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(_kernel(bl[i], bl[j], kernel, c) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    xy = sum(_kernel(al[i], bl[j], kernel, c) for i in range(5) for j in range(6)) / (5 * 6)
    assert plugin.mmd_squared(a, b, kernel, c).item() == pytest.approx(xx + yy - 2 * xy, abs=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd_is_near_zero_for_prior_samples_and_large_for_shifted_ones(plugin, kernel):
    """Over 20 seeds at n = 256, K = 4, C = 8 the same-distribution value has sd ~0.0015 (max 0.004),
    a shift of 1 per dimension gives ~0.19-0.25: 0.01 separates them by > 6 sd either way."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(256, 4, generator=g), torch.randn(256, 4, generator=g)
    assert abs(plugin.mmd_squared(a, b, kernel, 8.0).item()) < 0.01
    assert plugin.mmd_squared(a + 1.0, b, kernel, 8.0).item() > 0.1


def test_term_compares_the_batch_z_with_prior_draws_and_has_the_default_bandwidth(plugin):
    mmd = build("term", "mmd", {"kernel": "rbf", "scale": 2.0})
    assert type(mmd).sense == "minimize"
    assert mmd.kernel_scale(10) == pytest.approx(2 * 10 * 4.0)
    assert build("term", "mmd", {"bandwidth": 3.0}).kernel_scale(10) == 3.0
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(64, 3, generator=g, dtype=D64)
    step = posterior_step(mu, torch.ones_like(mu), z=mu.clone())
    torch.manual_seed(3)
    value = mmd(step)
    torch.manual_seed(3)
    prior = 2.0 * torch.randn_like(mu)
    assert value.item() == pytest.approx(plugin.mmd_squared(mu, prior, "rbf", 24.0).item(), abs=1e-12)


def test_gradients_reach_the_encoder():
    load_plugin_file(PLUGIN)
    torch.manual_seed(4)
    model = tiny_model(k1=3)
    step = make_step(model, torch.rand(16, 16))
    build("term", "mmd", {})(step).backward()
    grad = model.encoder.head.weight.grad[: 2 * model.latent_continuous]
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bad_params_raise_recipe_errors():
    load_plugin_file(PLUGIN)
    with pytest.raises(RecipeError, match="must be one of"):
        build("term", "mmd", {"kernel": "laplace"})
    with pytest.raises(RecipeError, match="'bandwidth' must be >= 0"):
        build("term", "mmd", {"bandwidth": -1.0})


def test_plugin_imports_only_the_public_api():
    tree = ast.parse(PLUGIN.read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in modules if m.startswith("imae_kit")} <= {"imae_kit", "imae_kit.params"}
