"""I(x;y), the Gaussian bounds of Prop. 1 and the I(x;z_k) estimate against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imae_kit.metrics.information import (aggregate_entropies, continuous_information, discrete_information,
                                          gaussian_bounds, informativeness_order)
from imae_kit.metrics.mixture import MixtureKernel, joint_log_sum, sample_posterior


@pytest.mark.parametrize("k", [2, 3, 10])
def test_deterministic_balanced_encoder_has_log_k_nats(k):
    labels = torch.arange(120 * k) % k
    probs = torch.nn.functional.one_hot(labels, k).double()
    info = discrete_information(probs)
    assert abs(info.mutual_information - math.log(k)) < 1e-12
    assert abs(info.entropy - math.log(k)) < 1e-12
    assert abs(info.conditional_entropy) < 1e-12


def test_uninformative_and_unbalanced_encoders():
    uniform = torch.full((50, 4), 0.25)
    assert abs(discrete_information(uniform).mutual_information) < 1e-12
    # confident but always the same category: H(y) = 0, so I(x;y) = 0
    same = torch.nn.functional.one_hot(torch.zeros(50, dtype=torch.long), 4).double()
    assert abs(discrete_information(same).mutual_information) < 1e-12


def test_gaussian_bounds_match_closed_form_for_constant_sigma():
    g = torch.Generator().manual_seed(0)
    a, b = 1.5, 0.5
    mu = a * torch.randn(20000, 3, generator=g)
    sigma = torch.full_like(mu, b)
    bounds = gaussian_bounds(mu, sigma)
    exact = 0.5 * math.log(1 + a * a / (b * b))
    var = mu.double().var(0, unbiased=False)
    assert torch.allclose(bounds.mean_posterior_variance, torch.full((3,), b * b, dtype=torch.float64))
    assert torch.allclose(bounds.variance_of_means, var)
    # with constant sigma the two bounds coincide (Jensen is tight) at 1/2 log(1 + Var[mu]/b^2)
    assert torch.allclose(bounds.lower, 0.5 * torch.log1p(var / b ** 2), atol=1e-6)
    assert torch.allclose(bounds.upper, bounds.lower, atol=1e-6)
    assert torch.all((bounds.lower - exact).abs() < 0.02)


def test_upper_bound_exceeds_lower_bound_when_sigma_varies():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(5000, 4, generator=g)
    sigma = torch.exp(torch.randn(5000, 4, generator=g))
    bounds = gaussian_bounds(mu, sigma)
    s2 = sigma.double().numpy() ** 2
    m = mu.double().numpy()
    upper = 0.5 * np.log(s2.mean(0) + m.var(0)) - 0.5 * np.log(s2).mean(0)
    assert np.allclose(bounds.upper.numpy(), upper)
    assert torch.all(bounds.upper > bounds.lower)


def test_information_estimate_matches_closed_form():
    # mu ~ N(0, a^2), sigma = b: the aggregate is N(0, a^2 + b^2), so I(x;z_k) = 1/2 log(1 + a^2/b^2)
    g = torch.Generator().manual_seed(2)
    scales = torch.tensor([2.0, 1.0, 0.25])
    b = 0.5
    mu = torch.randn(3000, 3, generator=g) * scales
    sigma = torch.full_like(mu, b)
    ent = aggregate_entropies(mu, sigma, num_samples=3000, mixture_size=3000, generator=g, kernel="eager")
    info = continuous_information(ent)
    exact = 0.5 * torch.log1p(scales.double() ** 2 / b ** 2)
    bounds = gaussian_bounds(mu, sigma)
    assert torch.all((info.per_dimension - exact).abs() < 0.04), (info.per_dimension, exact)
    assert torch.all((bounds.lower - exact).abs() < 0.04)
    assert torch.all((bounds.upper - exact).abs() < 0.04)
    assert informativeness_order(info.per_dimension) == [0, 1, 2]
    # independent dimensions: the joint I(x;z) is the sum of the per-dimension ones
    assert abs(info.joint - info.total) < 0.05


def test_mixture_of_identical_components_has_zero_information():
    mu = torch.full((2000, 2), 0.3)
    sigma = torch.full((2000, 2), 0.7)
    g = torch.Generator().manual_seed(3)
    info = continuous_information(aggregate_entropies(mu, sigma, num_samples=4000, mixture_size=0, generator=g))
    assert torch.all(info.per_dimension.abs() < 0.03)


def _naive_log_sums(z, mu, sigma):
    """log sum_m N(z_sk; mu_mk, sigma_mk) per dimension and jointly, by one dense logsumexp (float64)."""
    z, mu, sigma = z.double(), mu.double(), sigma.double()
    log_p = (-0.5 * ((z[:, None, :] - mu[None]) / sigma[None]) ** 2 - torch.log(sigma[None])
             - 0.5 * math.log(2 * math.pi))                           # [S, M, K]
    return torch.logsumexp(log_p, dim=1), torch.logsumexp(log_p.sum(-1), dim=1)


@pytest.mark.parametrize("chunk", [1 << 10, 1 << 21])
def test_chunked_kernels_match_a_dense_logsumexp(chunk):
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(700, 3, generator=g) * 3
    sigma = torch.exp(torch.randn(700, 3, generator=g) * 2).clamp(1.3e-4, 148.0)  # the model's clamps
    picks = torch.randint(0, 700, (150,), generator=g)
    z, own = sample_posterior(mu[picks], sigma[picks], g)
    per_dim, joint = _naive_log_sums(z, mu, sigma)
    got = MixtureKernel(mu, sigma, chunk_elements=chunk).log_sum(z, own)
    assert torch.allclose(got, per_dim, atol=1e-4, rtol=1e-5)
    got_joint = joint_log_sum(z, mu, sigma, chunk_elements=chunk)
    assert torch.allclose(got_joint, joint, atol=1e-3, rtol=1e-5)
