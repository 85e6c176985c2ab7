"""Total correlation of z over an evaluation set: TC(z) = KL(q(z) || prod_k q(z_k)) = sum_k H(z_k) - H(z).

Estimator: the same Monte-Carlo samples give both entropies of the aggregate posterior
q(z) = (1/M) sum_m q(z|x_m) (``imae_kit.metrics.information.ESTIMATOR_NOTE``):

    TC ~= (1/S) sum_s [ log q(z_s) - sum_k log q(z_sk) ],   z_s ~ q(z|x_s),

with every log q exact over the M mixture components (not the batch estimate of PAPER.md Appendix B, which
uses the B points of a minibatch as the mixture). Using the same samples for both terms makes the errors of
the two entropies largely cancel. Defaults: S = 10,000 samples, M = up to 10,000 points.
"""

from __future__ import annotations

import attrs
import torch

from imae_kit.metrics.information import AggregateEntropies, aggregate_entropies
from imae_kit.metrics.mixture import DEFAULT_CHUNK_ELEMENTS


@attrs.frozen(eq=False)
class TotalCorrelation:
    """TC(z) in nats with the joint and per-dimension entropies it came from and the sample counts."""

    value: float
    joint_entropy: float
    marginal_entropies: torch.Tensor
    samples: int
    mixture_size: int


def total_correlation_from(entropies: AggregateEntropies) -> TotalCorrelation:
    """TC = sum_k H(z_k) - H(z) from already estimated aggregate entropies (same samples for both)."""
    value = float(entropies.marginal.sum()) - entropies.joint
    return TotalCorrelation(value=value, joint_entropy=entropies.joint, marginal_entropies=entropies.marginal,
                            samples=entropies.samples, mixture_size=entropies.mixture_size)


def total_correlation(mu: torch.Tensor, sigma: torch.Tensor, *, num_samples: int = 10000,
                      mixture_size: int = 10000, generator: torch.Generator | None = None,
                      chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, progress: bool = False) -> TotalCorrelation:
    """TC(z) of the aggregate posterior of encodings mu, sigma [N, K] (module docstring for the estimator)."""
    ent = aggregate_entropies(mu, sigma, num_samples=num_samples, mixture_size=mixture_size, generator=generator,
                              chunk_elements=chunk_elements, kernel="eager", joint=True, progress=progress)
    return total_correlation_from(ent)
