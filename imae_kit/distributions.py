"""Pyro distributions of the model that pyro does not ship in the form the training step needs.

``RelaxedOneHot`` is the Gumbel-softmax (Jang et al. 2017) or Concrete (Maddison et al. 2017)
distribution over the probability simplex that the relaxed one-hot y of PAPER.md's Model is drawn from.
It is the same distribution as ``pyro.distributions.RelaxedOneHotCategorical`` (same density, and the
same random draws for the same generator state), written directly instead of as a transformed
``ExpRelaxedCategorical``: it is built and sampled once per training step, and pyro's form costs about
a quarter of a millisecond more per step, a percent of a step on a 2-core CPU (benchmarks/step_speed.py).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import clamp_probs


def gumbel_softmax(logits: torch.Tensor, temperature: float, uniforms: torch.Tensor) -> torch.Tensor:
    """softmax((logits + g) / temperature) over the last dim with g = -log(-log u), the Gumbel(0, 1)
    transform of ``uniforms`` (values strictly inside (0, 1), shape broadcastable with ``logits``)."""
    gumbels = -(-uniforms.log()).log()
    return torch.softmax((logits + gumbels) / temperature, dim=-1)


class RelaxedOneHot(TorchDistribution):
    """Relaxed one-hot categorical over K categories with a fixed ``temperature`` > 0.

    A draw is y = softmax((log pi + g) / temperature), g_k iid Gumbel(0, 1), a point of the simplex;
    it tends to a one-hot draw from Categorical(pi) as the temperature goes to 0 and is
    reparameterised (``rsample``). ``logits`` [..., K] are log pi up to an additive constant per row.
    The density (Maddison et al. 2017, eq. 1), with respect to the Lebesgue measure on the first K-1
    coordinates, is

        log p(y) = log (K-1)! + (K-1) log t + sum_k [log pi_k - (t+1) log y_k] - K log sum_k pi_k y_k^(-t).
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, temperature: float, logits: torch.Tensor, validate_args: bool | None = None):
        temperature = float(temperature)
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if logits.dim() < 1:
            raise ValueError("logits must have at least one dimension (the categories)")
        self.temperature = temperature
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "RelaxedOneHot":
        """The same distribution broadcast to ``batch_shape``."""
        batch_shape = torch.Size(batch_shape)
        return RelaxedOneHot(self.temperature, self.logits.expand(batch_shape + self.event_shape),
                             validate_args=False)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Reparameterised draws of shape sample_shape + batch_shape + [K]."""
        shape = self._extended_shape(sample_shape)
        uniforms = clamp_probs(torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device))
        return gumbel_softmax(self.logits, self.temperature, uniforms)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of points ``value`` [..., K] of the simplex (entries > 0)."""
        if self._validate_args:
            self._validate_sample(value)
        k = self.event_shape[0]
        t = self.temperature
        log_y = value.log()
        log_pi = self.logits - self.logits.logsumexp(dim=-1, keepdim=True)
        const = math.lgamma(k) + (k - 1) * math.log(t)
        return (const + (log_pi - (t + 1.0) * log_y).sum(-1)
                - k * (log_pi - t * log_y).logsumexp(dim=-1))
