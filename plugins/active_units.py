"""Active units (Burda et al. 2016, "Importance Weighted Autoencoders", Sec. 5.2), written as a third-party
metric plugin would be.

A continuous dimension z_k is active when its posterior mean moves with the input: Var_x(E[z_k | x]) =
Var[mu_k] over the evaluation split exceeds ``threshold`` (Burda et al.: 10^-2). Inactive dimensions have
collapsed to the prior: the decoder cannot read anything from them. Load it with ``plugins =
["plugins/active_units.py"]`` and ask for it in the recipe:

    [eval]
    metrics = ["accuracy", "discrete", "continuous", "total_correlation", "reconstruction", "mig",
               { name = "active_units", params = { threshold = 0.01 } }]

It uses only the public API: ``imae_kit.register_metric``, ``imae_kit.metrics`` (``MetricContext``,
``MetricResult``, ``FigureRequest``) and ``imae_kit.params``.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

import attrs

from imae_kit import register_metric
from imae_kit.metrics import FigureRequest, MetricContext, MetricResult
from imae_kit.params import float_field


@attrs.frozen
class ActiveUnitsResult(MetricResult):
    """How many dimensions are active, which ones, and Var[mu_k] of each."""

    count: int
    active: list[str]
    variance_of_means: list[float]
    threshold: float

    def headline(self) -> list[tuple[str, float | str]]:
        """The number of active dimensions (a float, as every headline number)."""
        return [(f"active units (Var[mu_k] > {self.threshold:g})", float(self.count))]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """Var[mu_k] of each dimension as a one-row heat map."""
        names = [f"z{k}" for k in range(len(self.variance_of_means))]
        return [FigureRequest("active_units", "Active units: Var[mu_k] of each dimension", "matrix",
                              {"matrix": [[v] for v in self.variance_of_means], "rows": names,
                               "columns": ["Var[mu_k]"], "title": f"{self.count} active units"})]


@register_metric("active_units")
@attrs.frozen
class ActiveUnits:
    """Dimensions z_k whose posterior mean varies over the data by more than ``threshold`` (Burda et al. 2016)."""

    needs: ClassVar = ()
    result_type: ClassVar = ActiveUnitsResult
    threshold: float = float_field(0.01, min=0.0, doc="Var[mu_k] above which z_k counts as active")

    def __call__(self, context: MetricContext) -> ActiveUnitsResult:
        """From the posterior means of the evaluation split (population variance)."""
        variance = context.encodings.mu.double().var(0, unbiased=False)
        active = [f"z{k}" for k, v in enumerate(variance.tolist()) if v > self.threshold]
        return ActiveUnitsResult(count=len(active), active=active, variance_of_means=variance.tolist(),
                                 threshold=self.threshold)
