"""How much the codes say about x, over a whole evaluation set (not a batch).

- Discrete code: I(x;y) = H(y) - H(y|x) with p(y) = mean_n p(y|x_n), exact (PAPER.md eq. 7 on all N points).
- Continuous code, per dimension k (PAPER.md, Prop. 1):
    E[sigma_k^2], Var[mu_k] (over the evaluation set, population variance),
    lower bound  1/2 log(1 + Var[mu_k] / E[sigma_k^2])                        (eq. 5)
    upper bound  1/2 log(E[sigma_k^2] + Var[mu_k]) - 1/2 E[log sigma_k^2]     (eq. 4)
  and an estimate of I(x;z_k) = H(z_k) - H(z_k|x), where H(z_k|x) = E[1/2 log(2 pi e sigma_k^2)] is exact and
  H(z_k) is a Monte-Carlo estimate over the aggregate posterior (see ``aggregate_entropies``).

The Gaussian bounds hold for the aggregate p(z_k) being Gaussian (upper: any p(z_k) with that variance;
lower: Gaussian p(z_k)); the estimate makes no such assumption.
"""

from __future__ import annotations

import math

import attrs
import torch

from imae_kit.estimators import LOG_2PI, entropy_of_probs
from imae_kit.metrics.mixture import (DEFAULT_CHUNK_ELEMENTS, MixtureKernel, choose_kernel, joint_log_sum,
                                      sample_posterior)
from imae_kit.progress import progress_callback


@attrs.frozen(eq=False)
class DiscreteInformation:
    """I(x;y) = H(y) - H(y|x) over an evaluation set; ``marginal`` is p(y) = mean_n p(y|x_n) [K2]."""

    mutual_information: float
    entropy: float
    conditional_entropy: float
    marginal: torch.Tensor


def discrete_information(probs: torch.Tensor) -> DiscreteInformation:
    """I(x;y), H(y), H(y|x) of the categorical encoder p(y|x) [N, K2] over all N points (PAPER.md eq. 7)."""
    p = probs.to(torch.float64)
    marginal = p.mean(0)
    h_y = float(entropy_of_probs(marginal))
    h_y_given_x = float(entropy_of_probs(p).mean())
    return DiscreteInformation(mutual_information=h_y - h_y_given_x, entropy=h_y,
                               conditional_entropy=h_y_given_x, marginal=marginal)


@attrs.frozen(eq=False)
class GaussianBounds:
    """Per-dimension statistics of p(z|x) over an evaluation set, and the bounds of Prop. 1 (all [K])."""

    mean_posterior_variance: torch.Tensor   # E[sigma_k^2]
    variance_of_means: torch.Tensor         # Var[mu_k]
    lower: torch.Tensor                     # eq. 5: 1/2 log(1 + Var[mu_k] / E[sigma_k^2])
    upper: torch.Tensor                     # eq. 4: 1/2 log(E[sigma_k^2] + Var[mu_k]) - 1/2 E[log sigma_k^2]


def gaussian_bounds(mu: torch.Tensor, sigma: torch.Tensor) -> GaussianBounds:
    """E[sigma_k^2], Var[mu_k] and the eq. 4 / eq. 5 bounds on I(x;z_k) from encodings mu, sigma [N, K]."""
    mu64, s64 = mu.to(torch.float64), sigma.to(torch.float64)
    e_var = (s64 * s64).mean(0)
    var_mu = mu64.var(0, unbiased=False)
    e_log_var = (2.0 * torch.log(s64)).mean(0)
    lower = 0.5 * torch.log1p(var_mu / e_var)
    upper = 0.5 * torch.log(e_var + var_mu) - 0.5 * e_log_var
    return GaussianBounds(mean_posterior_variance=e_var, variance_of_means=var_mu, lower=lower, upper=upper)


@attrs.frozen(eq=False)
class AggregateEntropies:
    """Entropies of the aggregate posterior q(z) = (1/M) sum_m q(z|x_m) over M evaluation points.

    ``marginal`` [K]: H(z_k); ``joint``: H(z); ``conditional`` [K]: H(z_k|x) = E[1/2 log(2 pi e sigma_k^2)]
    (exact); ``conditional_sampled`` [K]: -mean_s log q(z_sk | x_s) on the same samples as ``marginal`` (what
    the I(x;z_k) estimate subtracts, so that the sampling noise of the two terms cancels); ``samples``: S, the
    Monte-Carlo sample count; ``mixture_size``: M; ``kernel``: which kernel ran.
    """

    marginal: torch.Tensor
    joint: float
    conditional: torch.Tensor
    conditional_sampled: torch.Tensor
    samples: int
    mixture_size: int
    kernel: str


ESTIMATOR_NOTE = (
    "Monte Carlo over the aggregate posterior q(z) = (1/M) sum_m q(z|x_m) of M evaluation points (a uniform "
    "random subset when the set is larger than mixture_size): S samples z_s ~ q(z|x_s), with x_s cycling through "
    "a random permutation of the M points; log q(z_s) and each log q(z_sk) are exact logsumexp's over all M "
    "components. H(z_k) = -mean_s log q(z_sk), H(z) = -mean_s log q(z_s); I(x;z_k) = mean_s [log q(z_sk|x_s) - "
    "log q(z_sk)] (the same samples in both terms, so their noise cancels; its expectation is H(z_k) - H(z_k|x), "
    "with H(z_k|x) also reported exactly). Consistent as M grows; for finite M it measures the M-point mixture."
)


def subset_indices(n: int, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """All of 0..n-1 when ``size`` <= 0 or >= n, otherwise a uniform random subset of ``size`` (sorted)."""
    if size <= 0 or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size].sort().values


def sample_indices(n: int, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """``num_samples`` point indices that cycle through random permutations of 0..n-1 (each point used
    floor or ceil of num_samples / n times)."""
    reps = -(-num_samples // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:num_samples]


def aggregate_entropies(mu: torch.Tensor, sigma: torch.Tensor, *, num_samples: int = 10000,
                        mixture_size: int = 10000, generator: torch.Generator | None = None,
                        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, kernel: str = "auto",
                        joint: bool = True, progress: bool = False) -> AggregateEntropies:
    """H(z_k), H(z) and H(z_k|x) of the aggregate posterior of encodings mu, sigma [N, K]: ``ESTIMATOR_NOTE``."""
    points = subset_indices(int(mu.shape[0]), mixture_size, generator)
    mu_m, sigma_m = mu[points].to(torch.float32), sigma[points].to(torch.float32)
    m, k = mu_m.shape
    picks = sample_indices(m, num_samples, generator)
    z, own = sample_posterior(mu_m[picks], sigma_m[picks], generator)
    work = float(num_samples) * m * k
    used = choose_kernel(kernel, work)
    total = num_samples * m * (2 if joint else 1)
    with progress_callback("aggregate entropies", total, progress) as advance:
        log_qk = MixtureKernel(mu_m, sigma_m, kernel=used, chunk_elements=chunk_elements).log_sum(z, own, advance)
        marginal = -(log_qk - math.log(m)).mean(0)
        joint_h = float("nan")
        if joint:
            log_q = joint_log_sum(z, mu_m, sigma_m, chunk_elements=chunk_elements, advance=advance)
            joint_h = float(-(log_q - math.log(m)).mean())
    conditional = (torch.log(sigma_m.to(torch.float64)) + 0.5 * (LOG_2PI + 1.0)).mean(0)
    return AggregateEntropies(marginal=marginal, joint=joint_h, conditional=conditional,
                              conditional_sampled=-own.to(torch.float64).mean(0), samples=int(num_samples),
                              mixture_size=int(m), kernel=used)


@attrs.frozen(eq=False)
class ContinuousInformation:
    """I(x;z_k) per dimension [K], their sum, and the joint I(x;z) = H(z) - H(z|x), from ``entropies``."""

    per_dimension: torch.Tensor
    total: float
    joint: float
    entropies: AggregateEntropies


def continuous_information(entropies: AggregateEntropies) -> ContinuousInformation:
    """I(x;z_k) = H(z_k) - H(z_k|x) and I(x;z) = H(z) - sum_k H(z_k|x) (p(z|x) is factorial), with both
    entropies estimated on the same samples (``ESTIMATOR_NOTE``)."""
    per_dim = entropies.marginal - entropies.conditional_sampled
    joint = entropies.joint - float(entropies.conditional_sampled.sum())
    return ContinuousInformation(per_dimension=per_dim, total=float(per_dim.sum()), joint=joint,
                                 entropies=entropies)


def informativeness_order(per_dimension: torch.Tensor) -> list[int]:
    """Dimension indices from the most to the least informative (ties by index)."""
    values = [float(v) for v in per_dimension]
    return sorted(range(len(values)), key=lambda i: (-values[i], i))
