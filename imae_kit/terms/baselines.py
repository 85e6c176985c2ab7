"""The KL terms of the baselines PAPER.md compares against (Figure 1): beta-VAE, InfoVAE, JointVAE.

With r(z) = N(0, I) and r(y) = Uniform(K2), the ELBO's KL splits (PAPER.md, "The baselines") into
(2) I(x;y) + (3) KL(p(y)||r(y)) for y and (4) I(x;z) + (5) KL(p(z)||r(z)) for z:

- ``posterior_kl`` is (2)+(3) and/or (4)+(5): the beta-VAE penalty, in closed form per example;
- ``aggregate_kl`` is (3) and/or (5): the InfoVAE penalty as the IMAE paper writes it;
- ``capacity_kl`` is JointVAE's |(2)+(3) - C_y(t)| + |(4)+(5) - C_z(t)|.

``latent`` chooses the code: "z", "y" or "both" (the sum).
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import pyro.distributions as dist
import torch

from imae_kit.estimators import (
    ESTIMATORS,
    categorical_kl_to_uniform,
    log_mean_probs,
    step_aggregate,
)
from imae_kit.params import choice_field, float_field, int_field
from imae_kit.registry import register_term
from imae_kit.step import Posterior, Step

LATENTS = ("z", "y", "both")
_LATENT_DOC = "which code the KL is taken on: 'z', 'y' or 'both' (their sum)"


def _posterior_kl_z(post: Posterior) -> torch.Tensor:
    """KL(p(z|x_n) || N(0, I)) [B], closed form, summed over the K1 dimensions."""
    mu, sigma = post.mu, post.sigma
    prior = dist.Normal(torch.zeros_like(mu), torch.ones_like(sigma)).to_event(1)
    return torch.distributions.kl_divergence(post.z, prior)


def _posterior_kl_y(post: Posterior) -> torch.Tensor:
    """KL(p(y|x_n) || Uniform(K2)) [B], closed form."""
    uniform = dist.Categorical(logits=torch.zeros_like(post.logits))
    return torch.distributions.kl_divergence(post.y, uniform)


@register_term("posterior_kl")
@attrs.frozen
class PosteriorKL:
    """beta-VAE's posterior KL: E_x KL(p(z|x)||N(0,I)) and/or E_x KL(p(y|x)||Uniform(K2)) (PAPER.md, baselines (2)-(5)).

    Closed forms per example (torch.distributions.kl_divergence), averaged over the batch.
    """

    sense: ClassVar[str] = "minimize"
    latent: str = choice_field("both", LATENTS, doc=_LATENT_DOC)

    def __call__(self, step: Step) -> torch.Tensor:
        """Batch mean of the posterior KL(s) in nats."""
        post = step.posterior
        value = post.mu.new_zeros(())
        if self.latent in ("z", "both"):
            value = value + _posterior_kl_z(post).mean()
        if self.latent in ("y", "both"):
            value = value + _posterior_kl_y(post).mean()
        return value


@register_term("aggregate_kl")
@attrs.frozen
class AggregateKL:
    """InfoVAE's aggregate-posterior KL: KL(p(y)||Uniform(K2)) and/or KL(p(z)||N(0,I)) (PAPER.md, baselines (3), (5)).

    The y part is exact on the (global) batch: log K2 - H(mean_n p(y|x_n)). The z part uses the batch
    estimator of p(z) of PAPER.md Appendix B (or MWS/MSS, param ``estimator``) over the global batch.
    """

    sense: ClassVar[str] = "minimize"
    latent: str = choice_field("both", LATENTS, doc=_LATENT_DOC)
    estimator: str = choice_field("batch", ESTIMATORS,
                                  doc="batch estimator of p(z) for the z part: 'batch', 'mws' or 'mss'")

    def __call__(self, step: Step) -> torch.Tensor:
        """KL of the aggregate posterior(s) to the prior(s), in nats."""
        post = step.posterior
        value = post.mu.new_zeros(())
        if self.latent in ("z", "both"):
            value = value + step_aggregate(step, self.estimator).kl_to_normal(1.0)
        if self.latent in ("y", "both"):
            value = value + categorical_kl_to_uniform(log_mean_probs(step.gather(post.logits)))
        return value


@register_term("capacity_kl")
@attrs.frozen
class CapacityKL:
    """JointVAE's capacity objective |KL_z - C_z(t)| + |KL_y - C_y(t)| (PAPER.md, baselines table).

    KL_z = E_x KL(p(z|x)||N(0,I)) and KL_y = E_x KL(p(y|x)||Uniform(K2)) as in ``posterior_kl``. Each
    capacity grows linearly with the step t from its start to its end value over ``capacity_steps``
    steps, then stays there; C_y is also clipped at log K2, the largest value KL_y can take (as Dupont
    2018 does). The defaults are JointVAE's MNIST settings (Dupont 2018: both capacities 0 -> 5 nats
    over 25,000 iterations; its dSprites run used C_z 0 -> 40 over 300,000 and C_y 0 -> 1.1 ~ log 3).
    The batch means are over the global batch (Step.gather): |mean - C| is not a mean of per-example terms.
    """

    sense: ClassVar[str] = "minimize"
    latent: str = choice_field("both", LATENTS, doc=_LATENT_DOC)
    z_capacity_start: float = float_field(0.0, min=0.0, doc="C_z at step 0, nats")
    z_capacity_end: float = float_field(5.0, min=0.0, doc="C_z from step capacity_steps on, nats")
    y_capacity_start: float = float_field(0.0, min=0.0, doc="C_y at step 0, nats (clipped at log K2)")
    y_capacity_end: float = float_field(5.0, min=0.0, doc="C_y from step capacity_steps on, nats (clipped at log K2)")
    capacity_steps: int = int_field(25000, min=1, doc="steps over which both capacities ramp linearly")

    def capacities(self, step: int, num_categories: int) -> tuple[float, float]:
        """(C_z(t), C_y(t)) at optimisation step t for K2 = num_categories; C_y clipped at log K2."""
        frac = min(max(step, 0) / self.capacity_steps, 1.0)
        c_z = self.z_capacity_start + (self.z_capacity_end - self.z_capacity_start) * frac
        c_y = self.y_capacity_start + (self.y_capacity_end - self.y_capacity_start) * frac
        return c_z, min(c_y, math.log(num_categories))

    def __call__(self, step: Step) -> torch.Tensor:
        """Sum over the chosen codes of |posterior KL - capacity|, in nats."""
        post = step.posterior
        c_z, c_y = self.capacities(step.step, post.logits.shape[-1])
        value = post.mu.new_zeros(())
        if self.latent in ("z", "both"):
            value = value + (step.gather(_posterior_kl_z(post)).mean() - c_z).abs()
        if self.latent in ("y", "both"):
            value = value + (step.gather(_posterior_kl_y(post)).mean() - c_y).abs()
        return value
