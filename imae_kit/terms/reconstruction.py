"""The reconstruction term (1) of PAPER.md eq. 10."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from imae_kit.registry import register_term
from imae_kit.step import Step


@register_term("reconstruction")
@attrs.frozen
class Reconstruction:
    """E[log q(x|y,z)], the decoder's log-likelihood of the batch (PAPER.md eq. 10, term (1)).

    A single-sample Monte Carlo estimate with the step's reparameterised (y, z); Bernoulli pixels,
    summed over pixels and averaged over the batch, in nats.
    """

    sense: ClassVar[str] = "maximize"

    def __call__(self, step: Step) -> torch.Tensor:
        """Mean over the batch of log q(x_n | y_n, z_n)."""
        return step.likelihood.log_prob(step.x).mean()
