"""The sampled MIG (Chen et al. 2018) and the histogram MIG (disentanglement_lib) against known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid
from scipy.special import logsumexp
from scipy.stats import norm

from imae_kit.metrics.mig import (LatentFactorInformation, compute_mig, discrete_latent_factor_information,
                                  histogram_latent_factor_information, label_factors, mutual_information_gap,
                                  sampled_latent_factor_information)

SIZES = (3, 5, 8, 6)
NAMES = ("shape", "scale", "posX", "posY")


def _grid(sizes=SIZES) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*[range(s) for s in sizes])), dtype=torch.long)


def _centred(factors: torch.Tensor, sizes=SIZES) -> torch.Tensor:
    """Each factor mapped to [-1, 1]."""
    return torch.stack([factors[:, j].float() / (s - 1) * 2 - 1 for j, s in enumerate(sizes)], 1)


def _brute_force_information(mu, sigma, factors, num_samples: int, state: torch.Tensor, probs=None) -> np.ndarray:
    """Chen et al.'s sampled I(z_k; v_j) [K(+1), F] in float64, by one dense logsumexp per factor value, from the
    draws the estimator makes with a generator in ``state`` (its sample points cycle through random
    permutations, then one normal draw each); with ``probs`` a last row, I(y; v_j) exact."""
    g = torch.Generator()
    g.set_state(state)
    n, k = mu.shape
    reps = -(-num_samples // n)
    picks = torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:num_samples].numpy()
    noise = torch.randn((num_samples, k), generator=g, dtype=torch.float32).double().numpy()
    m, s = mu.double().numpy(), sigma.double().numpy()
    f = factors.numpy()
    z = m[picks] + s[picks] * noise
    dens = norm.logpdf(z[:, None, :], m[None], s[None])                     # [S, N, K]
    h = -(logsumexp(dens, axis=1) - math.log(n)).mean(0)
    rows = []
    for j in range(f.shape[1]):
        cond = np.zeros(k)
        for v in set(f[:, j].tolist()):
            points, samples = f[:, j] == v, f[picks, j] == v
            if samples.any():
                cond -= (logsumexp(dens[samples][:, points], axis=1) - math.log(points.sum())).sum(0)
        rows.append(h - cond / num_samples)
    matrix = np.stack(rows, 1)
    if probs is not None:
        y = np.array([_brute_force_discrete_mi(probs, factors[:, j]) for j in range(f.shape[1])])
        matrix = np.concatenate([matrix, y[None]], 0)
    return matrix


def _brute_force_mig(matrix: np.ndarray, factors: torch.Tensor, clamp: bool = True) -> tuple[float, list[float]]:
    """MIG by loops: per factor, (largest - second largest) I / H(v_j), H from counts; the mean and the gaps."""
    gaps = []
    f = factors.numpy()
    for j in range(matrix.shape[1]):
        counts = [int((f[:, j] == v).sum()) for v in sorted(set(f[:, j].tolist()))]
        h = -sum(c / len(f) * math.log(c / len(f)) for c in counts)
        column = sorted(((max(x, 0.0) if clamp else x) for x in matrix[:, j]), reverse=True)
        gaps.append((column[0] - column[1]) / h)
    return sum(gaps) / len(gaps), gaps


def _check_against_brute_force(info, mig, mu, sigma, factors, num_samples, state, probs=None, atol=2e-5):
    """Two-sided: the estimator's matrix and MIG equal the brute-force ones (same draws), to float32 noise."""
    ref = _brute_force_information(mu, sigma, factors, num_samples, state, probs)
    assert np.allclose(info.matrix.numpy(), ref, atol=atol), np.abs(info.matrix.numpy() - ref).max()
    score, gaps = _brute_force_mig(ref, factors)
    assert mig.score == pytest.approx(score, abs=atol)
    assert np.allclose(mig.gaps.numpy(), gaps, atol=atol)
    return ref


def test_copying_each_factor_into_its_own_dimension_scores_near_one():
    g = torch.Generator().manual_seed(0)
    factors = _grid()
    n = len(factors)
    values = _centred(factors)
    mu = torch.cat([values + 0.01 * torch.randn(n, 4, generator=g), torch.randn(n, 2, generator=g)], 1)
    sigma = torch.cat([torch.full((n, 4), 0.01), torch.ones(n, 2)], 1)
    state = g.get_state()
    info = sampled_latent_factor_information(mu, sigma, factors, factor_names=NAMES, num_samples=1500, generator=g)
    mig = mutual_information_gap(info)
    _check_against_brute_force(info, mig, mu, sigma, factors, 1500, state)
    assert 0.97 < mig.score <= 1.0 + 1e-9, mig.gaps
    assert mig.top == ("z0", "z1", "z2", "z3")
    # the copies carry (almost) all of each factor's entropy, log |v_j| on a full grid
    assert torch.allclose(info.factor_entropies, torch.log(torch.tensor(SIZES, dtype=torch.float64)))
    diag = info.matrix[torch.arange(4), torch.arange(4)]
    assert torch.all((diag - info.factor_entropies).abs() < 0.03), diag
    hist = mutual_information_gap(histogram_latent_factor_information(mu, factors, bins=20, factor_names=NAMES))
    assert hist.score > 0.95


def test_mixing_the_factors_scores_near_zero():
    # z = H v / 2 with H a 4 x 4 Hadamard matrix: every factor is equally present in every latent
    g = torch.Generator().manual_seed(1)
    sizes = (6, 6, 6, 6)
    factors = _grid(sizes)
    hadamard = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float32)
    mu = _centred(factors, sizes) @ hadamard.T / 2
    sigma = torch.full_like(mu, 0.05)
    state = g.get_state()
    info = sampled_latent_factor_information(mu, sigma, factors, num_samples=1500, generator=g)
    assert torch.all(info.matrix > 0.05)  # informative, just not disentangled
    mig = mutual_information_gap(info)
    _check_against_brute_force(info, mig, mu, sigma, factors, 1500, state)
    assert 0.0 <= mig.score < 0.05
    assert mutual_information_gap(histogram_latent_factor_information(mu, factors), clamp=False).score < 0.05


def test_ignoring_the_factors_scores_near_zero():
    g = torch.Generator().manual_seed(2)
    factors = _grid()
    n = len(factors)
    mu = torch.randn(n, 5, generator=g)
    sigma = torch.full((n, 5), 0.3)
    state = g.get_state()
    info = sampled_latent_factor_information(mu, sigma, factors, num_samples=1500, generator=g)
    assert torch.all(info.matrix.abs() < 0.03)
    mig = mutual_information_gap(info)
    _check_against_brute_force(info, mig, mu, sigma, factors, 1500, state)
    assert 0.0 <= mig.score < 0.03


def test_two_value_factor_matches_numerical_integration():
    # z | v ~ N(v d, s^2) exactly, v uniform on {0, 1}: I(z; v) = H(mixture) - H(N(0, s^2))
    d, s = 1.0, 0.5
    v = torch.arange(4000) % 2
    mu = (v.float() * d)[:, None].repeat(1, 2)
    mu[:, 1] = 0.0                     # a second, uninformative dimension
    sigma = torch.full_like(mu, s)
    grid = np.linspace(-6, 7, 200001)
    dens = 0.5 * (np.exp(-0.5 * (grid / s) ** 2) + np.exp(-0.5 * ((grid - d) / s) ** 2)) / (s * math.sqrt(2 * math.pi))
    h_mix = -trapezoid(dens * np.log(dens), grid)
    exact = h_mix - 0.5 * math.log(2 * math.pi * math.e * s * s)
    g = torch.Generator().manual_seed(3)
    info = sampled_latent_factor_information(mu, sigma, v[:, None], num_samples=4000, generator=g)
    assert abs(float(info.matrix[0, 0]) - exact) < 0.02, (float(info.matrix[0, 0]), exact)
    assert abs(float(info.matrix[1, 0])) < 0.01


def test_result_does_not_depend_on_the_chunk_size():
    factors = _grid()
    n = len(factors)
    g0 = torch.Generator().manual_seed(4)
    mu = _centred(factors) + 0.3 * torch.randn(n, 4, generator=g0)
    sigma = torch.full_like(mu, 0.2)
    a = sampled_latent_factor_information(mu, sigma, factors, num_samples=300,
                                          generator=torch.Generator().manual_seed(5), chunk_elements=1 << 12)
    b = sampled_latent_factor_information(mu, sigma, factors, num_samples=300,
                                          generator=torch.Generator().manual_seed(5), chunk_elements=1 << 22)
    assert torch.allclose(a.matrix, b.matrix, atol=1e-5)


def _brute_force_discrete_mi(y_probs: torch.Tensor, v: torch.Tensor) -> float:
    n, k = y_probs.shape
    values = sorted(set(v.tolist()))
    q = [sum(float(y_probs[i, c]) for i in range(n)) / n for c in range(k)]
    h = -sum(p * math.log(p) for p in q if p > 0)
    cond = 0.0
    for val in values:
        rows = [i for i in range(n) if int(v[i]) == val]
        qv = [sum(float(y_probs[i, c]) for i in rows) / len(rows) for c in range(k)]
        cond += len(rows) / n * -sum(p * math.log(p) for p in qv if p > 0)
    return h - cond


def test_discrete_latent_information_is_exact():
    factors = _grid((3, 4))
    y = torch.nn.functional.one_hot(factors[:, 0], 3).double()
    mi = discrete_latent_factor_information(y, factors)
    assert abs(float(mi[0]) - math.log(3)) < 1e-12 and abs(float(mi[1])) < 1e-12
    g = torch.Generator().manual_seed(6)
    soft = torch.softmax(torch.randn(len(factors), 3, generator=g) * 2, -1).double()
    mi = discrete_latent_factor_information(soft, factors)
    for j in range(2):
        assert abs(float(mi[j]) - _brute_force_discrete_mi(soft, factors[:, j])) < 1e-10


def _reference_histogram_mig(mu: np.ndarray, factors: np.ndarray, bins: int) -> tuple[np.ndarray, float]:
    """disentanglement_lib's histogram MIG written out with explicit loops over points, bins and values."""
    n, num_latents = mu.shape
    codes = np.zeros((n, num_latents), dtype=int)
    for k in range(num_latents):
        lo, hi = mu[:, k].min(), mu[:, k].max()
        width = (hi - lo) / bins
        for i in range(n):
            b = 0
            for e in range(bins):          # the last edge at or below the value (the maximum: last bin)
                if mu[i, k] >= lo + e * width:
                    b = e
            codes[i, k] = b
    num_factors = factors.shape[1]
    mi = np.zeros((num_latents, num_factors))
    ent = np.zeros(num_factors)
    for j in range(num_factors):
        values = sorted(set(factors[:, j]))
        pv = {v: np.mean(factors[:, j] == v) for v in values}
        ent[j] = -sum(p * math.log(p) for p in pv.values())
        for k in range(num_latents):
            for b in range(bins):
                pb = np.mean(codes[:, k] == b)
                for v in values:
                    pbv = np.mean((codes[:, k] == b) & (factors[:, j] == v))
                    if pbv > 0:
                        mi[k, j] += pbv * math.log(pbv / (pb * pv[v]))
    gaps = []
    for j in range(num_factors):
        s = sorted(mi[:, j], reverse=True)
        gaps.append((s[0] - s[1]) / ent[j])
    return mi, float(np.mean(gaps))


def test_histogram_mig_agrees_with_a_brute_force_reference():
    factors = _grid((3, 4, 5))
    g = torch.Generator().manual_seed(7)
    mu = torch.cat([_centred(factors, (3, 4, 5)), torch.zeros(len(factors), 1)], 1)
    mu = mu + 0.4 * torch.randn(mu.shape, generator=g, dtype=torch.float64).float()
    ref_mi, ref_score = _reference_histogram_mig(mu.double().numpy(), factors.numpy(), bins=7)
    info = histogram_latent_factor_information(mu, factors, bins=7)
    assert np.allclose(info.matrix.numpy(), ref_mi, atol=1e-12)
    assert abs(mutual_information_gap(info, clamp=False).score - ref_score) < 1e-12


def test_compute_mig_reports_both_variants():
    g = torch.Generator().manual_seed(8)
    factors = _grid()
    n = len(factors)
    values = _centred(factors)
    mu = torch.cat([values[:, 1:] + 0.01 * torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)], 1)
    sigma = torch.cat([torch.full((n, 3), 0.01), torch.ones(n, 2)], 1)
    probs = torch.nn.functional.one_hot(factors[:, 0], 3).float()
    assert label_factors(factors, factors[:, 0]) == [0]
    state = g.get_state()
    out = compute_mig(mu, sigma, factors, factor_names=NAMES, probs=probs, z_factors=NAMES[1:], num_samples=800,
                      generator=g)
    assert out["z_only"]["factors"] == list(NAMES[1:]) and "y" not in out["z_only"]["latents"]
    assert out["z_only"]["score"] > 0.95
    assert out["with_y"]["top_latent"]["shape"] == "y"
    assert out["with_y"]["score"] > 0.95
    assert abs(out["with_y"]["gaps"]["shape"] - 1.0) < 0.02
    matrix = torch.tensor(out["mutual_information"]["nats"])
    assert matrix.shape == (6, 4)
    ref = _brute_force_information(mu, sigma, factors, 800, state, probs=probs.double())
    assert np.allclose(matrix.numpy(), ref, atol=2e-5)
    for key, rows, cols in (("z_only", slice(0, 5), slice(1, 4)), ("with_y", slice(0, 6), slice(0, 4))):
        score, gaps = _brute_force_mig(ref[rows, cols], factors[:, cols])
        assert out[key]["score"] == pytest.approx(score, abs=2e-5)
        assert list(out[key]["gaps"].values()) == pytest.approx(gaps, abs=2e-5)
    assert out["histogram"]["z_only"]["score"] > 0.9 and out["histogram"]["with_y"]["score"] > 0.9


def test_mig_needs_two_latents():
    info = LatentFactorInformation(latent_names=("z0",), factor_names=("v",), matrix=torch.zeros(1, 1),
                                   factor_entropies=torch.ones(1))
    with pytest.raises(ValueError):
        mutual_information_gap(info)


@pytest.mark.slow
def test_compiled_kernel_agrees_with_the_eager_one():
    from imae_kit.metrics.mixture import choose_kernel

    if choose_kernel("compiled", 1e12) != "compiled":
        pytest.skip("torch.compile is not available here")
    factors = _grid()
    n = len(factors)
    g0 = torch.Generator().manual_seed(9)
    mu = _centred(factors) + 0.2 * torch.randn(n, 4, generator=g0)
    sigma = torch.exp(torch.randn(n, 4, generator=g0) - 2)
    runs = [sampled_latent_factor_information(mu, sigma, factors, num_samples=700, kernel=kernel,
                                              generator=torch.Generator().manual_seed(10))
            for kernel in ("eager", "compiled")]
    assert runs[1].kernel == "compiled"
    assert torch.allclose(runs[0].matrix, runs[1].matrix, atol=1e-4)


def test_bounded_latents_keep_every_estimated_number_and_move_the_mig_within_the_bound():
    """Two dimensions at the prior (I(x;z_k) ~ 1e-6 nats) among four informative ones: with ``bound_below`` they
    are bounded by eq. 4 (not estimated, entered as 0), every other entry is the number the full estimator gives
    from the same draws, and the MIG moves by no more than what those latents could add: their true I (at most
    the stated bound) or, in the full estimator, their Monte-Carlo estimate; a weakly informative dimension
    (I ~ 0.03 nats) above the threshold is still estimated."""
    g = torch.Generator().manual_seed(4)
    factors = _grid()
    n = len(factors)
    values = _centred(factors)
    prior_mu = 1e-3 * torch.randn(n, 2, generator=g)
    weak = 0.25 * values[:, :1] + 0.05 * torch.randn(n, 1, generator=g)
    mu = torch.cat([values[:, :2], prior_mu[:, :1], values[:, 2:], prior_mu[:, 1:], weak], 1)   # z2, z5: prior
    sigma = torch.cat([torch.full((n, 2), 0.05), torch.ones(n, 1), torch.full((n, 2), 0.05), torch.ones(n, 2)], 1)
    state = g.get_state()
    full = sampled_latent_factor_information(mu, sigma, factors, factor_names=NAMES, num_samples=1200, generator=g)
    g.set_state(state)
    bounded = sampled_latent_factor_information(mu, sigma, factors, factor_names=NAMES, num_samples=1200,
                                                generator=g, bound_below=0.01)
    assert sorted(bounded.bounds) == ["z2", "z5"]
    for name, u in bounded.bounds.items():   # eq. 4 by hand: 1/2 log(E s^2 + Var mu) - E log s
        k = int(name[1:])
        want = 0.5 * math.log(float((sigma[:, k].double() ** 2).mean() + mu[:, k].double().var(unbiased=False)))
        assert u == pytest.approx(want - float(sigma[:, k].double().log().mean()), abs=1e-12) and 0 <= u < 1e-5
    kept = [0, 1, 3, 4, 6]
    assert torch.allclose(bounded.matrix[kept], full.matrix[kept], atol=1e-9, rtol=0)
    assert torch.all(bounded.matrix[[2, 5]] == 0) and bool(bounded.marginal_entropies[[2, 5]].isnan().all())
    assert float(full.matrix[6].max()) > 0.01    # the weak dimension is informative enough to be estimated
    moved = abs(mutual_information_gap(bounded).score - mutual_information_gap(full).score)
    largest = torch.maximum(full.matrix[[2, 5]].clamp_min(0).max(0).values, torch.tensor(max(bounded.bounds.values())))
    assert 0 < bounded.bound_error() and moved <= float((largest / full.factor_entropies).mean()) + 1e-12
    assert full.bounds == {} and full.bound_error() == 0.0


def test_compute_mig_reports_what_it_bounded():
    g = torch.Generator().manual_seed(6)
    factors = _grid()
    n = len(factors)
    mu = torch.cat([_centred(factors), torch.zeros(n, 1)], 1)
    sigma = torch.cat([torch.full((n, 4), 0.05), torch.ones(n, 1)], 1)
    out = compute_mig(mu, sigma, factors, factor_names=NAMES, num_samples=500, generator=g, bound_below=0.01)
    assert out["bounded_latents"] == {"z4": 0.0} and out["bound_below"] == 0.01
    assert out["marginal_entropies"][4] is None and out["z_only"]["bound_error"] == 0.0
