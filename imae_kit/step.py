"""The immutable bundle every objective term reads: one training step, forward only."""

from __future__ import annotations

from typing import Any, Callable, Hashable

import attrs
import pyro.distributions as dist
import torch


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@attrs.frozen(eq=False)
class Posterior:
    """The encoder's p(y, z | x) = p(y|x) prod_k p(z_k|x) as pyro distributions (PAPER.md, Model).

    ``z`` is Normal(mu, sigma).to_event(1) with batch shape [B] and event shape [K1];
    ``y`` is Categorical(logits) with batch shape [B] over K2 categories.
    """

    z: dist.Independent
    y: dist.Categorical

    @property
    def mu(self) -> torch.Tensor:
        """Means of p(z|x), shape [B, K1]."""
        return self.z.base_dist.loc

    @property
    def sigma(self) -> torch.Tensor:
        """Standard deviations of p(z|x), shape [B, K1]."""
        return self.z.base_dist.scale

    @property
    def logits(self) -> torch.Tensor:
        """Normalised log-probabilities of p(y|x), shape [B, K2]."""
        return self.y.logits

    @property
    def probs(self) -> torch.Tensor:
        """Probabilities p(y|x), shape [B, K2]."""
        return self.y.probs


@attrs.frozen(eq=False)
class Samples:
    """Reparameterised samples: ``z`` [B, K1] and ``y`` a relaxed one-hot [B, K2] (Gumbel-softmax)."""

    z: torch.Tensor
    y: torch.Tensor


@attrs.frozen(eq=False)
class Step:
    """Everything a term may read about one step; terms must not modify it.

    - ``x``: the batch, [B, D], pixels in [0, 1], flattened.
    - ``posterior``: p(y, z | x) for the batch.
    - ``samples``: (y, z) drawn from the posterior by reparameterisation.
    - ``likelihood``: q(x | y, z), a pyro Bernoulli(logits).to_event(1) with batch shape [B].
    - ``encode``: re-encodes a (perturbed) x into a Posterior with the same network (for VAT).
    - ``dataset_size``: N, the number of training examples (for the MWS/MSS estimators).
    - ``step``: the optimisation step, counted from 0 (for schedules and capacities).
    - ``gather``: concatenates a per-process tensor over processes along dim 0 (identity here).

    ``shared(key, compute)`` memoises a derived quantity for the step, so terms that need the same
    intermediate (the B x B x K log-density matrix of marginal_kl and total_correlation) compute it once.
    """

    x: torch.Tensor
    posterior: Posterior
    samples: Samples
    likelihood: dist.Independent
    encode: Callable[[torch.Tensor], Posterior]
    dataset_size: int
    step: int = 0
    gather: Callable[[torch.Tensor], torch.Tensor] = _identity
    _memo: dict = attrs.field(factory=dict, repr=False, init=False)

    def shared(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for in this step, the same object after that."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def batch_size(self) -> int:
        """B, the number of examples in the batch."""
        return int(self.x.shape[0])
