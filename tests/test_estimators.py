"""Batch estimators against independent computations: brute-force loops, closed forms, enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from imae_kit import estimators as est

D64 = torch.float64


def _random_posteriors(b: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, k, generator=g, dtype=D64)
    sigma = 0.3 + torch.rand(b, k, generator=g, dtype=D64)
    z = mu + sigma * torch.randn(b, k, generator=g, dtype=D64)
    return z, mu, sigma


def _weight(i: int, j: int, b: int, n: int, estimator: str) -> float:
    """The importance weights written out from their definitions (docstring of imae_kit.estimators)."""
    if estimator == "batch":
        return 1.0 / b
    if estimator == "mws":
        return 1.0 / (n * b)
    return 1.0 / n if i == j else (n - 1) / (n * (b - 1))


# --------------------------------------------------------------------------- log-density matrix

def test_log_density_matrix_matches_a_loop_over_torch_normal():
    z, mu, sigma = _random_posteriors(5, 3)
    got = est.log_density_matrix(z, mu, sigma)
    assert got.shape == (5, 5, 3)
    for i in range(5):
        for j in range(5):
            for k in range(3):
                ref = torch.distributions.Normal(mu[j, k], sigma[j, k]).log_prob(z[i, k])
                assert got[i, j, k].item() == pytest.approx(ref.item(), abs=1e-12)


def test_log_density_matrix_rejects_mismatched_shapes():
    z, mu, sigma = _random_posteriors(4, 2)
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        est.log_density_matrix(z, mu[:3], sigma)


# --------------------------------------------------------------------------- importance weights

@pytest.mark.parametrize("estimator", ["batch", "mss"])
def test_weights_of_batch_and_mss_sum_to_one_per_row(estimator):
    log_w = est.log_importance_weights(7, estimator, 50, dtype=D64)
    assert torch.allclose(log_w.exp().sum(dim=1), torch.ones(7, dtype=D64), atol=1e-12)


def test_mws_weights_sum_to_one_over_n():
    log_w = est.log_importance_weights(7, "mws", 50, dtype=D64)
    assert torch.allclose(log_w.exp().sum(dim=1), torch.full((7,), 1 / 50, dtype=D64), atol=1e-15)


def test_mss_with_dataset_equal_to_batch_is_the_batch_estimator():
    z, mu, sigma = _random_posteriors(6, 3)
    log_q = est.log_density_matrix(z, mu, sigma)
    assert torch.allclose(est.log_aggregate_density(log_q, "mss", 6), est.log_aggregate_density(log_q, "batch"), atol=1e-12)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_dataset_size_is_required_and_checked(estimator):
    with pytest.raises(ValueError, match="data-set size"):
        est.log_importance_weights(8, estimator, None)
    with pytest.raises(ValueError, match="data-set size"):
        est.log_importance_weights(8, estimator, 5)
    with pytest.raises(ValueError, match="one of"):
        est.log_importance_weights(8, "stratified", 100)


# --------------------------------------------------------------------------- aggregate densities

@pytest.mark.parametrize("estimator", ["batch", "mws", "mss"])
def test_aggregate_densities_match_brute_force_sums(estimator):
    b, k, n = 4, 3, 10
    z, mu, sigma = _random_posteriors(b, k, seed=1)
    log_q = est.log_density_matrix(z, mu, sigma)
    joint = est.log_aggregate_density(log_q, estimator, n)
    marg = est.log_aggregate_marginals(log_q, estimator, n)
    assert joint.shape == (b,) and marg.shape == (b, k)
    for i in range(b):
        p_joint = 0.0
        p_marg = [0.0] * k
        for j in range(b):
            w = _weight(i, j, b, n, estimator)
            dens = [math.exp(torch.distributions.Normal(mu[j, kk], sigma[j, kk]).log_prob(z[i, kk]).item())
                    for kk in range(k)]
            p_joint += w * math.prod(dens)
            for kk in range(k):
                p_marg[kk] += w * dens[kk]
        assert joint[i].item() == pytest.approx(math.log(p_joint), abs=1e-10)
        for kk in range(k):
            assert marg[i, kk].item() == pytest.approx(math.log(p_marg[kk]), abs=1e-10)


def test_mws_differs_from_batch_by_the_known_constants():
    """MWS = batch - log N in each log-density: TC + (K-1) log N, sum of marginal KLs - K log N."""
    b, k, n = 8, 3, 1000
    z, mu, sigma = _random_posteriors(b, k, seed=2)
    log_q = est.log_density_matrix(z, mu, sigma)
    log_n = math.log(n)
    assert torch.allclose(est.log_aggregate_density(log_q, "mws", n), est.log_aggregate_density(log_q) - log_n)
    assert torch.allclose(est.log_aggregate_marginals(log_q, "mws", n), est.log_aggregate_marginals(log_q) - log_n)
    tc_b = est.total_correlation(z, mu, sigma, "batch")
    tc_w = est.total_correlation(z, mu, sigma, "mws", n)
    assert tc_w.item() == pytest.approx(tc_b.item() + (k - 1) * log_n, abs=1e-9)
    kl_b = est.marginal_kl_to_normal(z, mu, sigma, 1.0, "batch")
    kl_w = est.marginal_kl_to_normal(z, mu, sigma, 1.0, "mws", n)
    assert kl_w.item() == pytest.approx(kl_b.item() - k * log_n, abs=1e-9)


def test_mss_estimate_of_the_density_is_unbiased_over_every_batch():
    """Enumerate every batch of size B holding a fixed example n* out of a data set of N: the average of
    sum_j w_*j p(z|x_j) is exactly p(z) = mean_n p(z|x_n). The batch estimator's is not (a control)."""
    n_data, b, k = 6, 3, 2
    _, mu_all, sigma_all = _random_posteriors(n_data, k, seed=3)
    z = torch.tensor([0.3, -0.2], dtype=D64)
    exact = torch.stack([est.log_normal_density(z, mu_all[m], sigma_all[m]).sum() for m in range(n_data)]).exp().mean()
    for star in range(n_data):
        others = [m for m in range(n_data) if m != star]
        means = {"mss": [], "batch": []}
        for chosen in itertools.combinations(others, b - 1):
            for position in range(b):  # where n* sits in the batch must not matter
                idx = list(chosen)
                idx.insert(position, star)
                zb = z.expand(b, k).clone()
                log_q = est.log_density_matrix(zb, mu_all[idx], sigma_all[idx])
                for name in means:
                    means[name].append(est.log_aggregate_density(log_q, name, n_data)[position].exp())
        assert torch.stack(means["mss"]).mean().item() == pytest.approx(exact.item(), rel=1e-10)
        assert torch.stack(means["batch"]).mean().item() != pytest.approx(exact.item(), rel=1e-3)


# --------------------------------------------------------------------------- total correlation, marginal KL

def _gaussian_aggregate(b: int, cov: torch.Tensor, s: float, seed: int):
    """Posteriors N(mu_n, s^2 I) with mu_n ~ N(0, cov): the aggregate p(z) is exactly N(0, cov + s^2 I)."""
    g = torch.Generator().manual_seed(seed)
    k = cov.shape[0]
    mu = torch.randn(b, k, generator=g, dtype=D64) @ torch.linalg.cholesky(cov).T
    sigma = torch.full((b, k), s, dtype=D64)
    z = mu + sigma * torch.randn(b, k, generator=g, dtype=D64)
    return z, mu, sigma


def test_total_correlation_of_independent_codes_tends_to_zero():
    """The batch TC's bias (the j = i term of the mixture) shrinks with B: ~0.04 at B = 200, ~0.007 at 2000."""
    cov = torch.eye(2, dtype=D64) * (1 - 0.3 ** 2)
    small = est.total_correlation(*_gaussian_aggregate(200, cov, 0.3, seed=0)).item()
    large = est.total_correlation(*_gaussian_aggregate(2000, cov, 0.3, seed=0)).item()
    assert abs(large) < 0.03
    assert abs(large) < abs(small)


def test_total_correlation_matches_the_gaussian_closed_form():
    """TC of N(0, C) is -1/2 log det R (R the correlation matrix of C). Here C = cov + s^2 I exactly;
    at B = 2000, s = 0.3 the estimator's bias is < 0.01 and its seed-to-seed sd ~0.017 (measured over
    seeds), so 0.06 nats is a ~3.5 sd tolerance; rho = 0.8 gives a TC of 0.387, far outside it."""
    rho, s = 0.8, 0.3
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=D64)
    agg = cov + s * s * torch.eye(2, dtype=D64)
    d = agg.diagonal().sqrt()
    closed = -0.5 * torch.logdet(agg / d[:, None] / d[None, :]).item()
    got = est.total_correlation(*_gaussian_aggregate(2000, cov, s, seed=1)).item()
    assert got == pytest.approx(closed, abs=0.06)
    assert closed > 0.35


@pytest.mark.parametrize("variance, scale, per_dim", [(1.0, 1.0, 0.0), (4.0, 2.0, 0.0),
                                                      (2.0, 1.0, 0.5 * (2.0 - 1.0 - math.log(2.0)))])
def test_marginal_kl_matches_the_gaussian_closed_form(variance, scale, per_dim):
    """Aggregate N(0, v) per dimension against N(0, scale^2): KL = 1/2 (v/s^2 - 1 - log(v/s^2)) per
    dimension. At B = 1000 the measured bias is < 0.01 and sd < 0.03 for the sum over K = 3."""
    s = 0.5
    k = 3
    cov = torch.eye(k, dtype=D64) * (variance - s * s)
    z, mu, sigma = _gaussian_aggregate(1000, cov, s, seed=4)
    got = est.marginal_kl_to_normal(z, mu, sigma, scale)
    assert got.item() == pytest.approx(k * per_dim, abs=0.1 if per_dim else 0.03)
    per_dimension = est.marginal_kl_to_normal(z, mu, sigma, scale, per_dimension=True)
    assert per_dimension.shape == (k,)
    assert per_dimension.sum().item() == pytest.approx(got.item(), abs=1e-12)


@pytest.mark.parametrize("estimator", ["batch", "mws", "mss"])
def test_aggregate_kl_splits_into_total_correlation_and_marginal_kls(estimator):
    """KL(p(z)||N(0,I)) = TC(z) + sum_k KL(p(z_k)||N(0,1)) holds term by term for each estimator."""
    z, mu, sigma = _random_posteriors(16, 4, seed=5)
    whole = est.aggregate_kl_to_normal(z, mu, sigma, 1.0, estimator, 100)
    parts = est.total_correlation(z, mu, sigma, estimator, 100) + est.marginal_kl_to_normal(z, mu, sigma, 1.0, estimator, 100)
    assert whole.item() == pytest.approx(parts.item(), abs=1e-9)


# --------------------------------------------------------------------------- categoricals

def test_discrete_mi_is_log_k_for_confident_balanced_assignments():
    k = 5
    log_probs = torch.log_softmax(torch.eye(k, dtype=D64).repeat(3, 1) * 60.0, dim=-1)
    assert est.discrete_mutual_information(log_probs).item() == pytest.approx(math.log(k), abs=1e-9)


def test_discrete_mi_is_zero_for_identical_rows():
    row = torch.log_softmax(torch.tensor([0.3, -1.0, 2.0, 0.0], dtype=D64), dim=-1)
    assert est.discrete_mutual_information(row.expand(9, 4)).item() == pytest.approx(0.0, abs=1e-12)


def test_discrete_mi_matches_a_brute_force_double_loop():
    g = torch.Generator().manual_seed(6)
    log_probs = torch.log_softmax(2 * torch.randn(7, 4, generator=g, dtype=D64), dim=-1)
    p = log_probs.exp().tolist()
    n, k = 7, 4
    marginal = [sum(p[i][y] for i in range(n)) / n for y in range(k)]
    # I(x;y) = sum_n (1/N) sum_y p(y|x_n) log(p(y|x_n) / p(y))
    ref = sum(p[i][y] * math.log(p[i][y] / marginal[y]) for i in range(n) for y in range(k)) / n
    assert est.discrete_mutual_information(log_probs).item() == pytest.approx(ref, abs=1e-12)
    assert 0.0 <= ref <= math.log(k)


def test_categorical_helpers_match_torch_distributions():
    g = torch.Generator().manual_seed(7)
    lp = torch.log_softmax(torch.randn(5, 6, generator=g, dtype=D64), dim=-1)
    lq = torch.log_softmax(torch.randn(5, 6, generator=g, dtype=D64), dim=-1)
    cat_p, cat_q = torch.distributions.Categorical(logits=lp), torch.distributions.Categorical(logits=lq)
    assert torch.allclose(est.categorical_entropy(lp), cat_p.entropy(), atol=1e-12)
    assert torch.allclose(est.categorical_kl(lp, lq), torch.distributions.kl_divergence(cat_p, cat_q), atol=1e-12)
    uniform = torch.distributions.Categorical(logits=torch.zeros(6, dtype=D64))
    assert torch.allclose(est.categorical_kl_to_uniform(lp), torch.distributions.kl_divergence(cat_p, uniform), atol=1e-12)
    assert torch.allclose(est.log_mean_probs(lp).exp(), lp.exp().mean(dim=0), atol=1e-12)


def test_entropy_of_one_hot_rows_is_zero_with_finite_gradients():
    log_probs = torch.tensor([[0.0, -math.inf, -math.inf], [-math.inf, 0.0, -math.inf]], requires_grad=True)
    h = est.categorical_entropy(log_probs)
    assert torch.equal(h.detach(), torch.zeros(2))
    h.sum().backward()
    assert torch.isfinite(log_probs.grad).all()


# --------------------------------------------------------------------------- the matrix-free aggregate

def _reference_aggregates(z, mu, sigma, estimator, n):
    log_q = est.log_density_matrix(z, mu, sigma)
    return est.log_aggregate_density(log_q, estimator, n), est.log_aggregate_marginals(log_q, estimator, n)


@pytest.mark.parametrize("estimator", ["batch", "mws", "mss"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matrix_free_aggregate_equals_the_matrix_in_value_and_gradient(estimator, dtype):
    """log p(z_i) by the float64 quadratic form and log p(z_ik) by the chunked kernel (with its hand-written
    backward) give the numbers and gradients of the [B, B, K] matrix they avoid; chunks of 3 rows, B = 37."""
    g = torch.Generator().manual_seed(11)
    b, k, n = 37, 5, 1000
    mu = (torch.randn(b, k, generator=g) * 2).to(dtype).requires_grad_()
    sigma = torch.exp(torch.randn(b, k, generator=g) - 1).to(dtype).requires_grad_()
    eps = torch.randn(b, k, generator=g).to(dtype)
    weights = torch.randn(b, generator=g).to(dtype), torch.randn(b, k, generator=g).to(dtype)

    def loss(joint, marg):
        return (joint * weights[0]).sum() + (marg * weights[1]).sum()

    z = mu + sigma * eps
    ref_joint, ref_marg = _reference_aggregates(z, mu, sigma, estimator, n)
    ref_grads = torch.autograd.grad(loss(ref_joint, ref_marg), (mu, sigma))
    z = mu + sigma * eps
    joint = est.log_joint_aggregate(z, mu, sigma, estimator, n)
    marg = est.log_marginal_aggregates(z, mu, sigma, estimator, n, chunk_elements=3 * b * k)
    grads = torch.autograd.grad(loss(joint, marg), (mu, sigma))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-4)
    assert torch.allclose(joint, ref_joint, **tol) and torch.allclose(marg, ref_marg, **tol)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, **tol)


def test_matrix_free_joint_survives_tiny_sigmas():
    """The quadratic form cancels terms of size z^2 / sigma^2 (sigma = e^-9: 6.6e7): in float64 the joint
    still matches the direct float64 matrix, and a float32 input gets a float32 result."""
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(16, 4, generator=g)
    sigma = torch.full((16, 4), math.exp(-9.0))
    z = mu + sigma * torch.randn(16, 4, generator=g)
    want = est.log_aggregate_density(est.log_density_matrix(z.double(), mu.double(), sigma.double()))
    got = est.log_joint_aggregate(z, mu, sigma)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-3)


def _brute_logsumexp(row: list[float]) -> float:
    """log sum exp over a Python list, in float64 with math.fsum (no torch)."""
    finite = [v for v in row if v != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(math.fsum(math.exp(v - top) for v in finite))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_floored_matches_a_brute_force_sum_where_terms_underflow(dtype):
    """Terms spread over thousands of nats (a trained encoder's sharp dimensions: most pairs underflow exp):
    the value equals the exact sum within the dtype's resolution and the gradient is softmax(x), the floored
    terms getting no more than e^-85 of the largest term's weight."""
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(6, 40, 3, generator=g, dtype=torch.float64) * 800).to(dtype).requires_grad_()
    got = est.logsumexp_floored(x, dim=1)
    (grad,) = torch.autograd.grad(got.sum(), x)
    got, xs = got.detach(), x.detach().double()
    for i in range(6):
        for k in range(3):
            row = xs[i, :, k].tolist()
            want = _brute_logsumexp(row)
            # rounding: a few ulps of the largest input magnitude (x - max is exact to that, then exp)
            tol = 8 * torch.finfo(dtype).eps * max(1.0, max(abs(v) for v in row))
            assert abs(float(got[i, k]) - want) <= tol
            soft = [math.exp(v - want) for v in row]
            assert max(abs(float(a) - b) for a, b in zip(grad[i, :, k], soft)) <= tol + math.exp(-85)


def test_logsumexp_floored_keeps_non_finite_maxima_as_torch_does():
    x = torch.tensor([[-math.inf, -math.inf], [1.0, -math.inf], [math.inf, 0.0], [math.nan, 0.0]])
    got = est.logsumexp_floored(x, dim=1)
    assert got[0] == -math.inf and got[1] == 1.0 and got[2] == math.inf and math.isnan(got[3])


def test_chunked_marginals_of_sharp_posteriors_match_the_float64_matrix():
    """Sharp posteriors (sigma 1e-3 against means spread over [-3, 3]: nearly every pair under exp's range) give
    the float64 matrix's log p(z_ik) and its gradients, computed with torch.logsumexp, to float32 resolution
    (z, mu and sigma the same numbers on both sides)."""
    g = torch.Generator().manual_seed(9)
    b, k = 64, 4
    mu = torch.rand(b, k, generator=g) * 6 - 3
    sigma = torch.full((b, k), 1e-3)
    z = mu + sigma * torch.randn(b, k, generator=g)
    weights = torch.randn(b, k, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (z, mu, sigma)]
    got = est.log_marginal_aggregates(*leaves, chunk_elements=7 * b * k)
    grads = torch.autograd.grad((got.double() * weights).sum(), leaves)
    leaves64 = [t.double().requires_grad_() for t in (z, mu, sigma)]
    want = torch.logsumexp(est.log_density_matrix(*leaves64), dim=1) - math.log(b)
    want_grads = torch.autograd.grad((want * weights).sum(), leaves64)
    assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-5)
    for a, w in zip(grads, want_grads):
        assert torch.allclose(a.double(), w, rtol=1e-4, atol=1e-4 * float(w.abs().max()))
