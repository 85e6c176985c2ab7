"""The paper's measurements as registered metrics (PAPER.md "Experiments to reproduce"): unsupervised accuracy
of y, I(x;y), the continuous code's information with the bounds of Prop. 1, the total correlation and the
reconstruction error with the posterior KLs. Each wraps the computation of its module (``accuracy``,
``information``, ``total_correlation``, ``encodings``) and writes the eval.json block it always wrote.
They take no parameters: their settings are the [eval] keys (``entropy_samples``, ``mixture_size``,
``prior_scale``, ...)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import attrs

from imae_kit.metrics.accuracy import cluster_accuracy
from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult
from imae_kit.metrics.encodings import posterior_kls
from imae_kit.metrics.information import (ESTIMATOR_NOTE, continuous_information, discrete_information,
                                          gaussian_bounds, informativeness_order)
from imae_kit.metrics.total_correlation import total_correlation_from
from imae_kit.registry import register_metric

RECONSTRUCTION_NOTE = (
    "nats per image under the Bernoulli decoder: nll_sampled draws (y, z) as in training (reparameterised z, "
    "Gumbel-softmax y at the model's temperature); nll_mean_code decodes the one-hot argmax y and the mean z. "
    "kl_z = KL(p(z|x)||N(0, s^2 I)), kl_y = KL(p(y|x)||uniform).")
TC_NOTE = "sum_k H(z_k) - H(z), both from the same samples; see continuous.estimator"


@attrs.frozen
class AccuracyResult(MetricResult):
    """Best-matching accuracy of y against the labels, NMI, the matching (category -> label) and confusion."""

    accuracy: float
    nmi: float
    matching: list[int]
    confusion: list[list[int]]
    class_names: list[str] | None

    def headline(self) -> list[tuple[str, float | str]]:
        """Accuracy and NMI."""
        return [("accuracy of y (best matching)", self.accuracy), ("NMI(y; label)", self.nmi)]

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The confusion matrix."""
        return [FigureRequest("confusion", "Confusion of learnt categories and labels", "confusion",
                              {"confusion": self.confusion, "matching": self.matching,
                               "class_names": self.class_names, "accuracy": self.accuracy})]


@register_metric("accuracy")
@attrs.frozen
class UnsupervisedAccuracy:
    """Accuracy of y under the best one-to-one matching of categories to labels (Hungarian), and NMI."""

    needs: ClassVar = ("labels",)
    result_type: ClassVar = AccuracyResult

    def __call__(self, context: MetricContext) -> AccuracyResult | None:
        """From the evaluation split's argmax categories and labels (None without labels)."""
        enc, test = context.encodings, context.splits.test
        if enc.labels is None:
            return None
        num_classes = test.num_classes or int(enc.labels.max()) + 1
        ca = cluster_accuracy(enc.predicted, enc.labels, enc.probs.shape[1], num_classes)
        names = getattr(test, "class_names", None)
        return AccuracyResult(accuracy=ca.accuracy, nmi=ca.nmi, matching=ca.mapping,
                              confusion=ca.confusion.tolist(), class_names=[str(n) for n in names] if names else None)


@attrs.frozen
class DiscreteResult(MetricResult):
    """I(x;y) = H(y) - H(y|x) over the evaluation split, log K2 and p(y)."""

    mutual_information: float
    entropy: float
    conditional_entropy: float
    log_k: float
    category_frequencies: list[float]

    def headline(self) -> list[tuple[str, float | str]]:
        """I(x;y), H(y), H(y|x)."""
        return [("I(x;y) nats", self.mutual_information), ("H(y) nats", self.entropy),
                ("H(y|x) nats", self.conditional_entropy)]


@register_metric("discrete")
@attrs.frozen
class DiscreteCodeInformation:
    """I(x;y), H(y), H(y|x) of the discrete code over the whole evaluation split (PAPER.md eq. 7, exact)."""

    result_type: ClassVar = DiscreteResult

    def __call__(self, context: MetricContext) -> DiscreteResult:
        """From p(y|x) of the evaluation split."""
        di = discrete_information(context.encodings.probs)
        return DiscreteResult(mutual_information=di.mutual_information, entropy=di.entropy,
                              conditional_entropy=di.conditional_entropy,
                              log_k=math.log(context.encodings.probs.shape[1]),
                              category_frequencies=di.marginal.tolist())


@attrs.frozen
class ContinuousResult(MetricResult):
    """Per dimension z_k: I(x;z_k), the Prop. 1 bounds, E[sigma_k^2], Var[mu_k], H(z_k), H(z_k|x); their sums,
    the joint I(x;z), the informativeness order and the estimator's sample counts."""

    dimensions: list[dict[str, Any]]
    order: list[int]
    mutual_information_sum: float
    mutual_information_joint: float
    lower_bound_sum: float
    upper_bound_sum: float
    samples: int
    mixture_size: int
    kernel: str
    estimator: str

    def column(self, key: str) -> list[float]:
        """One field of every dimension, in index order."""
        return [d[key] for d in self.dimensions]

    def headline(self) -> list[tuple[str, float | str]]:
        """I(x;z), as a sum over dimensions and jointly."""
        return [("I(x;z) nats (sum over k of I(x;z_k))", self.mutual_information_sum),
                ("I(x;z) nats (joint)", self.mutual_information_joint)]

    def report(self) -> list[str]:
        """The per-dimension table, most informative first."""
        lines = ["## Continuous dimensions (sorted by I(x;z_k))", "",
                 "I(x;z_k) is a Monte-Carlo estimate over the aggregate posterior of "
                 f"{self.mixture_size} evaluation points with {self.samples} samples; the bounds are PAPER.md "
                 "eq. 5 (lower) and eq. 4 (upper). All in nats.", "",
                 "| z_k | I(x;z_k) | lower (eq. 5) | upper (eq. 4) | E[sigma_k^2] | Var[mu_k] |",
                 "|---|---:|---:|---:|---:|---:|"]
        for i in self.order:
            d = self.dimensions[i]
            lines.append(f"| z{i} | {d['mutual_information']:.3f} | {d['lower_bound']:.3f} | "
                         f"{d['upper_bound']:.3f} | {d['mean_posterior_variance']:.3g} | {d['variance_of_means']:.3g} |")
        return lines

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """PAPER.md Figure 2(a), with I(x;y) in its title when the discrete code was measured."""
        discrete = results.get("discrete")
        return [FigureRequest("information", "Per-dimension information (PAPER.md Figure 2(a))", "information", {
            "per_dimension": self.column("mutual_information"), "lower": self.column("lower_bound"),
            "upper": self.column("upper_bound"), "mean_posterior_variance": self.column("mean_posterior_variance"),
            "variance_of_means": self.column("variance_of_means"),
            "discrete_information": getattr(discrete, "mutual_information", None),
            "log_k": getattr(discrete, "log_k", None)})]


@register_metric("continuous")
@attrs.frozen
class ContinuousCodeInformation:
    """I(x;z_k) per dimension (Monte Carlo over the aggregate posterior), its Gaussian bounds (PAPER.md Prop. 1,
    eq. 4 and 5) and the joint I(x;z); [eval] entropy_samples and mixture_size set the estimator."""

    result_type: ClassVar = ContinuousResult

    def __call__(self, context: MetricContext) -> ContinuousResult:
        """From mu, sigma of the evaluation split (the aggregate entropies are shared with total_correlation)."""
        enc = context.encodings
        bounds = gaussian_bounds(enc.mu, enc.sigma)
        ent = context.aggregate_entropies()
        ci = continuous_information(ent)
        dims = [{"index": i, "mutual_information": float(ci.per_dimension[i]),
                 "lower_bound": float(bounds.lower[i]), "upper_bound": float(bounds.upper[i]),
                 "mean_posterior_variance": float(bounds.mean_posterior_variance[i]),
                 "variance_of_means": float(bounds.variance_of_means[i]),
                 "entropy": float(ent.marginal[i]), "conditional_entropy": float(ent.conditional[i])}
                for i in range(enc.mu.shape[1])]
        return ContinuousResult(dimensions=dims, order=informativeness_order(ci.per_dimension),
                                mutual_information_sum=ci.total, mutual_information_joint=ci.joint,
                                lower_bound_sum=float(bounds.lower.sum()), upper_bound_sum=float(bounds.upper.sum()),
                                samples=ent.samples, mixture_size=ent.mixture_size, kernel=ent.kernel,
                                estimator=ESTIMATOR_NOTE)


@attrs.frozen
class TotalCorrelationResult(MetricResult):
    """TC(z) = sum_k H(z_k) - H(z) with the entropies and sample counts it came from."""

    value: float
    joint_entropy: float
    sum_of_marginal_entropies: float
    samples: int
    mixture_size: int
    estimator: str

    def headline(self) -> list[tuple[str, float | str]]:
        """TC(z)."""
        return [("TC(z) nats", self.value)]


@register_metric("total_correlation")
@attrs.frozen
class TotalCorrelation:
    """TC(z) = KL(q(z) || prod_k q(z_k)) of the aggregate posterior, from the same samples as I(x;z_k)."""

    result_type: ClassVar = TotalCorrelationResult

    def __call__(self, context: MetricContext) -> TotalCorrelationResult:
        """From the shared aggregate entropies of the evaluation split."""
        tc = total_correlation_from(context.aggregate_entropies())
        return TotalCorrelationResult(value=tc.value, joint_entropy=tc.joint_entropy,
                                      sum_of_marginal_entropies=float(tc.marginal_entropies.sum()),
                                      samples=tc.samples, mixture_size=tc.mixture_size, estimator=TC_NOTE)


@attrs.frozen
class ReconstructionResult(MetricResult):
    """Reconstruction NLLs (sampled and mean code) and posterior KLs, nats per image."""

    nll_sampled: float
    nll_mean_code: float
    kl_z: float
    kl_y: float
    prior_scale: float
    note: str

    def headline(self) -> list[tuple[str, float | str]]:
        """The sampled NLL and both posterior KLs."""
        return [("reconstruction NLL nats/image", self.nll_sampled), ("KL(p(z|x)||r(z)) nats", self.kl_z),
                ("KL(p(y|x)||r(y)) nats", self.kl_y)]


@register_metric("reconstruction")
@attrs.frozen
class Reconstruction:
    """-log q(x|y,z) per image ((y, z) drawn as in training, and at the mean code) and the posterior KLs
    against N(0, s^2 I) ([eval] prior_scale) and the uniform over K2."""

    result_type: ClassVar = ReconstructionResult

    def __call__(self, context: MetricContext) -> ReconstructionResult:
        """From the NLLs the evaluation split's encoding recorded, and mu, sigma, p(y|x)."""
        enc, s = context.encodings, context.settings.prior_scale
        kl_z, kl_y = posterior_kls(enc.mu, enc.sigma, enc.probs, s)
        return ReconstructionResult(nll_sampled=float(enc.nll_sampled.double().mean()),
                                    nll_mean_code=float(enc.nll_mean_code.double().mean()),
                                    kl_z=kl_z, kl_y=kl_y, prior_scale=s, note=RECONSTRUCTION_NOTE)
