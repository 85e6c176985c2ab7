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
    """The encoder's p(y, z | x) = p(y|x) prod_k p(z_k|x) (PAPER.md, Model), as tensors and pyro distributions.

    - ``mu``, ``sigma``: mean and standard deviation of p(z|x), [B, K1];
    - ``logits``: normalised log-probabilities log p(y|x), [B, K2] (each row logsumexp's to 0);
    - ``z``: pyro ``Normal(mu, sigma).to_event(1)``, batch shape [B], event shape [K1];
    - ``y``: pyro ``Categorical(logits=logits)``, batch shape [B] over K2 categories.

    The two distributions are built on first access and then kept: the terms that need only the
    parameters (VAT's extra encodes, the batch estimators) never pay for constructing them. Build a
    Posterior from the parameters, or from existing distributions with ``Posterior.from_distributions``.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    logits: torch.Tensor
    _distributions: dict = attrs.field(factory=dict, repr=False, init=False)

    @classmethod
    def from_distributions(cls, z: dist.Independent, y: dist.Categorical) -> "Posterior":
        """The Posterior of a Normal(mu, sigma).to_event(1) over z and a Categorical over y (kept as given)."""
        post = cls(mu=z.base_dist.loc, sigma=z.base_dist.scale, logits=y.logits)
        post._distributions.update(z=z, y=y)
        return post

    @property
    def z(self) -> dist.Independent:
        """p(z|x) = Normal(mu, sigma).to_event(1)."""
        if "z" not in self._distributions:
            # valid by construction (the encoder's sigma = exp of a clamped value), so skip pyro's argument
            # checks: they cost a reduction and a host sync per distribution per step
            self._distributions["z"] = dist.Normal(self.mu, self.sigma, validate_args=False).to_event(1)
        return self._distributions["z"]

    @property
    def y(self) -> dist.Categorical:
        """p(y|x) = Categorical(logits)."""
        if "y" not in self._distributions:
            self._distributions["y"] = dist.Categorical(logits=self.logits, validate_args=False)
        return self._distributions["y"]

    @property
    def probs(self) -> torch.Tensor:
        """Probabilities p(y|x), shape [B, K2]."""
        return self.logits.exp()


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
    - ``gather``: concatenates a per-process tensor over the processes along dim 0, in rank order, with
      autograd (its backward sums the gradient over processes); the identity in one process. Under
      ``torchrun`` each process's Step holds its slice of the global batch (``x`` is [B/N, D]); a term
      that is a statistic of the batch computes it from gathered tensors (imae_kit.distributed explains
      why the gradients are then exactly those of one process on the global batch).
    - ``rank``, ``world_size``: this process and the number of processes (0 and 1 in one process).
    - ``precision``: 'fp32' or 'bf16', the arithmetic the networks ran in (the posterior is fp32 either way).
    - ``index``: the rows of the training set this process's batch holds, [B] (None where the caller did not
      say, e.g. a batch built by hand); ``data``: that training set (an ``ArrayDataset``), or None. For terms
      with a per-example quantity of the data set (VAT's IMSAT radius).

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
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1
    index: torch.Tensor | None = None
    data: Any = None
    _memo: dict = attrs.field(factory=dict, repr=False, init=False)

    def shared(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for in this step, the same object after that."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def batch_size(self) -> int:
        """B, the number of examples in this process's batch (its slice of the global batch)."""
        return int(self.x.shape[0])

    @property
    def global_batch_size(self) -> int:
        """The number of examples over all processes (equal slices)."""
        return self.batch_size * self.world_size

    @property
    def batch_offset(self) -> int:
        """The global index of this process's first example: its rows of a gathered tensor start here."""
        return self.batch_size * self.rank
