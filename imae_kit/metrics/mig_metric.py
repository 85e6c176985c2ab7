"""The MIG as a registered metric: both estimators of ``imae_kit.metrics.mig`` (sampled, Chen et al.; histogram,
disentanglement_lib), each with z alone over the factors other than the label (PAPER.md Figure 5) and with y
as one more latent over every factor (Figure 7), over the factor split ([eval] mig_split, mig_max_points,
mig_samples, mig_bound_below, histogram_bins)."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import attrs

from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult
from imae_kit.metrics.mig import compute_mig, label_factors
from imae_kit.registry import register_metric


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


@attrs.frozen
class MigResult(MetricResult):
    """Both MIGs as ``compute_mig`` returns them (scores, gaps, top latents, information matrices), with the
    split and the factors left out of the z-only MIG."""

    points: int
    samples: int
    kernel: str
    z_only: dict
    with_y: dict | None
    mutual_information: dict
    marginal_entropies: list[float]
    histogram: dict
    split: str
    excluded_from_z_only: list[str]
    bounded_latents: dict = attrs.field(factory=dict)
    bound_below: float = 0.0

    def headline(self) -> list[tuple[str, float | str]]:
        """Sampled and histogram MIG, z only and with y."""
        rows: list[tuple[str, float | str]] = [("MIG z (sampled, Chen et al.)", self.z_only["score"])]
        if self.with_y:
            rows.append(("MIG z and y (sampled)", self.with_y["score"]))
        rows.append((f"MIG z (histogram, {self.histogram['bins']} bins)", self.histogram["z_only"]["score"]))
        if self.histogram.get("with_y"):
            rows.append(("MIG z and y (histogram)", self.histogram["with_y"]["score"]))
        return rows

    def report(self) -> list[str]:
        """The per-factor table of gaps and top latents."""
        hist, with_y = self.histogram, self.with_y or {}
        lines = ["## Disentanglement (MIG)", "",
                 f"Over {self.points} points of the {self.split} split. Sampled: Chen et al.'s estimator, "
                 f"{self.samples} samples of q(z|x), each gap normalised by H(v_j). Histogram: "
                 f"{hist['bins']} equal-width bins of the means, as disentanglement_lib and disent.", "",
                 "| factor v_j | H(v_j) | gap, z only | top, z only | gap, z and y | top, z and y | "
                 "histogram gap, z only | histogram gap, z and y |",
                 "|---|---:|---:|---|---:|---|---:|---:|"]
        info = self.mutual_information
        entropies = dict(zip(info["factors"], info["factor_entropies"]))
        for f in info["factors"]:
            cells = [f, _fmt(entropies[f]),
                     _fmt(self.z_only["gaps"].get(f, "-")), self.z_only["top_latent"].get(f, "-"),
                     _fmt(with_y.get("gaps", {}).get(f, "-")), with_y.get("top_latent", {}).get(f, "-"),
                     _fmt(hist["z_only"]["gaps"].get(f, "-")),
                     _fmt((hist.get("with_y") or {}).get("gaps", {}).get(f, "-"))]
            lines.append("| " + " | ".join(cells) + " |")
        if self.bounded_latents:
            bounds = ", ".join(f"{k} <= {v:.4f}" for k, v in self.bounded_latents.items())
            lines += ["", f"Bounded, not estimated (I(x;z_k) provably below {self.bound_below:g} nats, PAPER.md "
                          f"eq. 4): {bounds} nats; taken as 0, which can move the sampled MIG by at most "
                          f"{self.z_only.get('bound_error', 0.0):.4f} (z only)"
                          + (f" / {self.with_y.get('bound_error', 0.0):.4f} (with y)" if self.with_y else "") + "."]
        if self.excluded_from_z_only:
            lines += ["", f"The z-only MIG leaves out {', '.join(self.excluded_from_z_only)} (the class label, "
                          "which y is meant to carry), as PAPER.md Figure 5; the with-y MIG counts it (Figure 7)."]
        return lines

    def figures(self, results: Mapping[str, MetricResult]) -> list[FigureRequest]:
        """The I(latent; factor) / H(factor) heat maps of both estimators."""
        return [FigureRequest("mig_matrix", "I(latent; factor) / H(factor), sampled and histogram estimators",
                              "mig_matrix", {"mig": self.to_json()})]


@register_metric("mig")
@attrs.frozen
class MutualInformationGap:
    """The mutual information gap (Chen et al. 2018), sampled and histogram estimators, z only and with y."""

    needs: ClassVar = ("factors",)
    result_type: ClassVar = MigResult

    def __call__(self, context: MetricContext) -> MigResult | None:
        """Over the factor split's encodings, with the evaluation's generator."""
        menc = context.factor_encodings()
        if menc is None or menc.factors is None:
            return None
        s, names = context.settings, context.factor_names()
        excluded = label_factors(menc.factors, menc.labels)
        z_factors = tuple(n for j, n in enumerate(names) if j not in excluded) or names
        mig = compute_mig(menc.mu, menc.sigma, menc.factors, factor_names=names, probs=menc.probs,
                          z_factors=z_factors, num_samples=s.mig_samples, bins=s.histogram_bins,
                          generator=context.generator, chunk_elements=s.chunk_elements, kernel=s.mixture_kernel,
                          progress=context.progress, bound_below=s.mig_bound_below)
        return MigResult(**mig, split=s.mig_split, excluded_from_z_only=[names[j] for j in excluded])
