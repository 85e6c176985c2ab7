"""The MMD form of InfoVAE (Zhao et al. 2019), written as a third-party plugin would be.

Load it from a recipe with ``plugins = ["plugins/mmd.py"]`` and use it as

    [[objective.terms]]
    name = "mmd"
    weight = "${beta}"
    params = { kernel = "imq" }

It uses only the public API: ``imae_kit.register_term``, ``imae_kit.Step`` and ``imae_kit.params``.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from imae_kit import Step, register_term
from imae_kit.params import choice_field, float_field


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for a [n, K] and b [m, K] -> [n, m] (exact, with finite gradients at 0)."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).square().sum(dim=-1)


def kernel_matrix(a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """k(a_i, b_j) [n, m]: RBF exp(-d^2 / C) or inverse multiquadric C / (C + d^2), C = bandwidth."""
    d2 = squared_distances(a, b)
    if kernel == "rbf":
        return torch.exp(-d2 / bandwidth)
    if kernel == "imq":
        return bandwidth / (bandwidth + d2)
    raise ValueError(f"unknown kernel {kernel!r}")


def _mean_off_diagonal(k: torch.Tensor) -> torch.Tensor:
    """Mean of a square matrix over i != j."""
    n = k.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def mmd_squared(a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    """Unbiased MMD^2 between samples a [n, K] and b [m, K] (Gretton et al. 2012, U-statistic), n, m >= 2."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the unbiased MMD needs at least two samples on each side")
    return (_mean_off_diagonal(kernel_matrix(a, a, kernel, bandwidth))
            + _mean_off_diagonal(kernel_matrix(b, b, kernel, bandwidth))
            - 2.0 * kernel_matrix(a, b, kernel, bandwidth).mean())


@register_term("mmd")
@attrs.frozen
class MaximumMeanDiscrepancy:
    """InfoVAE's MMD^2(p(z), N(0, s^2 I)): batch z against as many prior draws (Zhao et al.; PAPER.md, baselines).

    The MMD form InfoVAE itself uses in place of the KL(p(z)||r(z)) that PAPER.md writes. Unbiased
    U-statistic estimate, so it can be slightly negative; it is a squared kernel distance, not nats.
    Kernels: "imq", C / (C + ||a-b||^2), which Tolstikhin et al. (WAE, 2018) recommend for its heavy
    tails, or "rbf", exp(-||a-b||^2 / C). The default C = 2 K1 s^2 (Tolstikhin et al.) is the expected
    squared distance between two prior draws; set ``bandwidth`` > 0 to fix C yourself. Prior draws come
    from torch's global generator, which the trainer seeds. Over several processes both samples are
    gathered (``step.gather``): the MMD of the global batch, the same value on every process.
    """

    sense: ClassVar[str] = "minimize"
    kernel: str = choice_field("imq", ("imq", "rbf"), doc="kernel: inverse multiquadric or Gaussian (RBF)")
    scale: float = float_field(1.0, min=0.0, min_exclusive=True, doc="prior scale s of r(z) = N(0, s^2 I)")
    bandwidth: float = float_field(0.0, min=0.0, doc="kernel scale C; 0 means 2 * K1 * scale^2")

    def kernel_scale(self, latent_dim: int) -> float:
        """The kernel scale C used for K1 = latent_dim continuous dimensions."""
        return self.bandwidth if self.bandwidth > 0 else 2.0 * latent_dim * self.scale ** 2

    def __call__(self, step: Step) -> torch.Tensor:
        """Unbiased MMD^2 between step.samples.z and a fresh batch from the prior (both over all processes)."""
        z = step.samples.z
        prior = self.scale * torch.randn_like(z)
        return mmd_squared(step.gather(z), step.gather(prior), self.kernel, self.kernel_scale(z.shape[1]))
