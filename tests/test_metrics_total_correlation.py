"""Total correlation of z over an evaluation set against Gaussian closed forms."""

from __future__ import annotations

import math

import torch

from imae_kit.metrics.total_correlation import total_correlation


def _gaussian_tc(cov: torch.Tensor) -> float:
    """TC of N(0, cov) = -1/2 log det R, R the correlation matrix."""
    d = torch.sqrt(torch.diag(cov))
    corr = cov / torch.outer(d, d)
    return float(-0.5 * torch.logdet(corr))


def test_independent_gaussian_encodings_have_zero_tc():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2500, 3, generator=g)
    sigma = torch.full_like(mu, 0.4)
    tc = total_correlation(mu, sigma, num_samples=2500, mixture_size=2500, generator=g)
    assert abs(tc.value) < 0.03, tc.value
    assert tc.samples == 2500 and tc.mixture_size == 2500


def test_correlated_gaussian_encodings_match_minus_half_log_det_r():
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, -0.3, 0.8]])
    mu = torch.randn(2500, 3, generator=g) @ a.T
    s = 0.3
    sigma = torch.full_like(mu, s)
    # the aggregate posterior is (close to) N(0, A A^T + s^2 I)
    expected = _gaussian_tc(a.double() @ a.double().T + s * s * torch.eye(3, dtype=torch.float64))
    tc = total_correlation(mu, sigma, num_samples=2500, mixture_size=2500, generator=g)
    assert expected > 0.4
    assert abs(tc.value - expected) < 0.06, (tc.value, expected)
    # and the joint entropy is that of the Gaussian, 1/2 log det(2 pi e Sigma)
    cov = a.double() @ a.double().T + s * s * torch.eye(3, dtype=torch.float64)
    h = 0.5 * float(torch.logdet(2 * math.pi * math.e * cov))
    assert abs(tc.joint_entropy - h) < 0.06


def test_subsampled_mixture_is_reported():
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(4000, 2, generator=g)
    tc = total_correlation(mu, torch.full_like(mu, 0.5), num_samples=500, mixture_size=1000, generator=g)
    assert tc.mixture_size == 1000 and tc.samples == 500
    assert abs(tc.value) < 0.05
