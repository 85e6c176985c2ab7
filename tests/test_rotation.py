"""The rotated-latent probe (imae_kit.rotation): against a brute-force covariance and an explicit re-wiring."""

from __future__ import annotations

import copy
import math
import textwrap

import pytest
import torch
from torch import nn

from imae_kit.recipe import parse_recipe
from imae_kit.rotation import informative_pair, objective_profile, rotated, rotation_matrix
from imae_kit.training import Trainer
from conftest import MINIMAL_RECIPE
from helpers import tiny_model

# the tests' toy recipe (reconstruction, marginal KL) with the other terms that read z, in fp32 (the rotation is compared exactly)
RECIPE = MINIMAL_RECIPE + textwrap.dedent("""\
    precision = "fp32"

    [[objective.terms]]
    name = "total_correlation"
    weight = 4.0

    [[objective.terms]]
    name = "posterior_kl"
    weight = 1.0
    """)


def test_rotation_matrix_is_a_rotation_in_the_plane_and_refuses_a_bad_pair():
    r = rotation_matrix(5, (1, 3), 0.7)
    assert torch.allclose(r @ r.T, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert float(torch.linalg.det(r)) == pytest.approx(1.0)
    untouched = [0, 2, 4]
    assert torch.equal(r[untouched][:, untouched], torch.eye(3, dtype=torch.float64))
    for bad in [(2, 2), (0, 5), (-1, 1)]:
        with pytest.raises(ValueError, match="two different dimensions"):
            rotation_matrix(5, bad, 0.1)


def test_the_rotated_posterior_is_the_diagonal_of_the_rotated_covariance_and_the_decoder_undoes_it():
    model = tiny_model(data_dim=16, k1=4, k2=3)
    x = torch.rand(7, 16)
    theta = 0.6
    post, turned = model.encode(x), rotated(model, (0, 2), theta).encode(x)
    r = rotation_matrix(4, (0, 2), theta)
    for n in range(len(x)):  # one example at a time, in float64: R diag(sigma^2) R^T and R mu
        cov = r @ torch.diag(post.sigma[n].double().square()) @ r.T
        assert torch.allclose(turned.sigma[n].double().square(), torch.diagonal(cov), rtol=1e-5)
        assert torch.allclose(turned.mu[n].double(), r @ post.mu[n].double(), atol=1e-6)
    assert torch.equal(turned.logits, post.logits)
    y = torch.nn.functional.one_hot(torch.arange(7) % 3, 3).float()
    z = torch.randn(7, 4)
    z_turned = (r.float() @ z.T).T
    decoded = rotated(model, (0, 2), theta).decode(y, z_turned).base_dist.logits
    assert torch.allclose(decoded, model.decode(y, z).base_dist.logits, atol=1e-5)
    same = rotated(model, (0, 2), 0.0)
    assert torch.equal(same.encode(x).mu, post.mu) and torch.equal(same.encode(x).sigma, post.sigma)


@pytest.mark.parametrize("posterior", ["moments", "entropy"])
def test_at_zero_the_rotated_model_is_the_model_bit_for_bit_even_under_bf16_autocast(posterior):
    model = tiny_model(data_dim=16, k1=4, k2=3)
    x, y = torch.rand(9, 16), torch.nn.functional.one_hot(torch.arange(9) % 3, 3).float()
    same = rotated(model, (1, 2), 0.0, posterior)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's step region under precision = "bf16"
        post, turned = model.encode(x), same.encode(x)
        z = post.mu + 0.5 * post.sigma
        decoded, again = model.decode(y, z).base_dist.logits, same.decode(y, z).base_dist.logits
    assert torch.equal(turned.mu, post.mu) and torch.equal(turned.sigma, post.sigma)
    assert torch.equal(decoded, again)


def test_the_entropy_posterior_keeps_the_log_determinant_and_is_otherwise_the_moment_matched_shape():
    model = tiny_model(data_dim=16, k1=4, k2=3)
    x = torch.rand(6, 16)
    post = model.encode(x)
    moments, entropy = (rotated(model, (0, 3), 0.9, p).encode(x) for p in ("moments", "entropy"))
    assert torch.allclose(entropy.sigma.log().sum(-1), post.sigma.log().sum(-1), atol=1e-5)
    assert bool((moments.sigma.log().sum(-1) >= post.sigma.log().sum(-1) - 1e-6).all())  # Hadamard
    ratio = entropy.sigma / moments.sigma  # one factor per example
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5)
    with pytest.raises(ValueError, match="posterior must be one of"):
        rotated(model, (0, 3), 0.9, "full")


def _swapped(model, i: int, j: int):
    """The model re-wired by hand so that its code is (z_i, z_j) -> (-z_j, z_i): encoder head rows and decoder
    input columns permuted, one sign flipped (what a 90-degree rotation of the pair is)."""
    out = copy.deepcopy(model)
    k1, k2 = model.latent_continuous, model.latent_discrete
    with torch.no_grad():
        w, b = out.encoder.head.weight, out.encoder.head.bias
        w0, b0 = model.encoder.head.weight, model.encoder.head.bias
        w[i], b[i], w[j], b[j] = -w0[j], -b0[j], w0[i], b0[i]  # mu
        w[k1 + i], b[k1 + i], w[k1 + j], b[k1 + j] = w0[k1 + j], b0[k1 + j], w0[k1 + i], b0[k1 + i]  # log sigma
        first = next(m for m in out.decoder.modules() if isinstance(m, nn.Linear))
        first0 = next(m for m in model.decoder.modules() if isinstance(m, nn.Linear))
        first.weight[:, k2 + i], first.weight[:, k2 + j] = -first0.weight[:, k2 + j], first0.weight[:, k2 + i]
    return out


def test_at_ninety_degrees_every_term_equals_the_hand_rewired_model_and_at_zero_the_model_itself():
    trainer = Trainer(parse_recipe(RECIPE, source="rotation.toml"), None, progress=False)
    model = trainer.model
    g = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(trainer.train_set), generator=g)[:49] for _ in range(2)]
    base = objective_profile(trainer, model, 0, batches)
    assert set(base) == {"reconstruction", "marginal_kl", "total_correlation", "posterior_kl", "loss"}
    assert objective_profile(trainer, rotated(model, (1, 3), 0.0), 0, batches) == pytest.approx(base, abs=1e-5)
    quarter = objective_profile(trainer, rotated(model, (1, 3), math.pi / 2), 0, batches)
    by_hand = objective_profile(trainer, _swapped(model, 1, 3), 0, batches)
    assert quarter == pytest.approx(by_hand, abs=1e-4)
    halfway = objective_profile(trainer, rotated(model, (1, 3), math.pi / 4), 0, batches)
    assert halfway["posterior_kl"] != pytest.approx(base["posterior_kl"], abs=1e-6)  # the probe does change things
    assert trainer.model is model


def test_the_informative_pair_is_the_two_largest_variance_ratios():
    mu = torch.randn(500, 4) * torch.tensor([0.1, 3.0, 1.0, 2.0])
    sigma = torch.full((500, 4), 0.5)
    assert informative_pair(mu, sigma) == (1, 3)
