"""Terms on the aggregate posterior of the continuous code z: Gaussian matching and total correlation."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from imae_kit.estimators import ESTIMATORS, step_aggregate
from imae_kit.params import choice_field, float_field
from imae_kit.registry import register_term
from imae_kit.step import Step

_ESTIMATOR_DOC = (
    "batch estimator of p(z): 'batch' (PAPER.md App. B), 'mws' or 'mss' (Chen et al. 2018; "
    "'mws' is offset by a constant multiple of log N, see imae_kit.estimators)"
)


@register_term("marginal_kl")
@attrs.frozen
class MarginalKL:
    """Gaussian matching: sum_k KL(p(z_k) || N(0, scale^2)) on the batch (PAPER.md eq. 6, App. B).

    Minimising it keeps every aggregate marginal p(z_k) close to a Gaussian of variance scale^2, which
    by Prop. 1 (eq. 4-5) makes each z_k informative about x without letting mu or sigma run away.
    """

    sense: ClassVar[str] = "minimize"
    scale: float = float_field(1.0, min=0.0, min_exclusive=True, doc="prior scale s of r(z_k) = N(0, s^2)")
    estimator: str = choice_field("batch", ESTIMATORS, doc=_ESTIMATOR_DOC)

    def __call__(self, step: Step) -> torch.Tensor:
        """Batch estimate of sum_k KL(p(z_k) || N(0, s^2)) with the step's z samples."""
        return step_aggregate(step, self.estimator).marginal_kl_to_normal(self.scale)


@register_term("total_correlation")
@attrs.frozen
class TotalCorrelation:
    """Total correlation TC(z) = KL(p(z) || prod_k p(z_k)) on the batch (PAPER.md eq. 10, App. B).

    Minimising it (weight gamma in IMAE) pushes the continuous dimensions towards independence.
    """

    sense: ClassVar[str] = "minimize"
    estimator: str = choice_field("batch", ESTIMATORS, doc=_ESTIMATOR_DOC)

    def __call__(self, step: Step) -> torch.Tensor:
        """Batch estimate of mean_i [log p(z_i) - sum_k log p(z_ik)] with the step's z samples."""
        return step_aggregate(step, self.estimator).total_correlation()
