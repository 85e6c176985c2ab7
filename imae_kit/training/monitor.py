"""Evaluation numbers during training (``train.eval_every``): learning curves of accuracy, I(x;y) and MIG.

Every ``eval_every`` steps the model is evaluated on a fixed subset of the evaluation split (or, with
``train.eval_split = "train"``, of the training split, to choose defaults without the test labels' help;
``train.eval_points`` images, drawn once from ``train.seed``): the accuracy of y and NMI (when the data
has labels), I(x;y) of the subset, the active continuous dimensions, the total correlation of z (the final
evaluation's estimator, ``imae_kit.metrics.total_correlation``, with ``train.eval_samples`` samples against
up to 10,000 of the subset's posteriors), and the sampled MIG with and without
y (when it has ground-truth factors; Chen et al.'s estimator on the subset, ``train.eval_samples``
samples), with each factor's gap beside it (``mig_gaps``). The model runs in eval mode under no_grad with
its own random generator, so a run with these curves trains exactly as one without them. The numbers go
into metrics.jsonl beside the terms (key ``"eval"``; no wall times, so a resumed run logs exactly what an
uninterrupted one does); being on a subset with fewer samples, they are a curve to watch, not the final
evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from imae_kit.data.base import ArrayDataset
from imae_kit.estimators import entropy_of_probs
from imae_kit.metrics.accuracy import cluster_accuracy
from imae_kit.metrics.encodings import encode_dataset
from imae_kit.metrics.mig import compute_mig, label_factors
from imae_kit.metrics.settings import DEFAULT_BOUND_BELOW
from imae_kit.metrics.total_correlation import total_correlation

TC_MIXTURE = 10_000  # posteriors in the aggregate q(z) of the TC, as in the final evaluation


class TrainingMonitor:
    """The periodic evaluation of one run on a fixed subset of ``dataset``."""

    def __init__(self, dataset: ArrayDataset, *, points: int, samples: int, seed: int, batch_size: int = 1000):
        n = len(dataset)
        g = torch.Generator().manual_seed(seed + 7_919)
        self.index = torch.randperm(n, generator=g)[:min(points, n)].sort().values
        self.dataset = dataset
        self.samples = samples
        self.seed = seed
        self.batch_size = batch_size
        self.factor_names = tuple(getattr(dataset, "factor_names", ()) or ())

    def encode(self, model: torch.nn.Module):
        """The subset's encodings by ``model`` (put in eval mode for the call, restored after)."""
        return encode_dataset(model, self.dataset, batch_size=self.batch_size, indices=self.index)

    def mig(self, enc) -> dict[str, Any]:
        """``compute_mig`` of the subset's encodings (the data has factors), with this monitor's samples and
        seed: the label factor, when there is one, left out of the z-only score."""
        excluded = label_factors(enc.factors, enc.labels)
        z_factors = tuple(n for j, n in enumerate(self.factor_names) if j not in excluded) or self.factor_names
        return compute_mig(enc.mu, enc.sigma, enc.factors, factor_names=self.factor_names, probs=enc.probs,
                           z_factors=z_factors, num_samples=self.samples,
                           generator=torch.Generator().manual_seed(self.seed), kernel="eager",
                           bound_below=DEFAULT_BOUND_BELOW)

    def total_correlation(self, enc):
        """TC(z) of the subset's encodings: the final evaluation's estimator, this monitor's samples and seed."""
        return total_correlation(enc.mu, enc.sigma, num_samples=self.samples, mixture_size=TC_MIXTURE,
                                 generator=torch.Generator().manual_seed(self.seed + 1))

    def __call__(self, model: torch.nn.Module) -> dict[str, Any]:
        """The numbers of the model as it is now (model put in eval mode for the call, restored after)."""
        enc = self.encode(model)
        out: dict[str, Any] = {"points": len(enc)}
        probs = enc.probs.double()
        out["mutual_information_y"] = float(entropy_of_probs(probs.mean(0)) - entropy_of_probs(probs).mean())
        variance_of_means, mean_variance = enc.mu.double().var(0), enc.sigma.double().square().mean(0)
        informative = 0.5 * torch.log1p(variance_of_means / mean_variance)  # eq. 5's lower bound, nats
        out["active_dimensions"] = int((informative > 0.1).sum())
        out["total_correlation"] = self.total_correlation(enc).value
        if enc.labels is not None:
            k2 = enc.probs.shape[1]
            classes = getattr(self.dataset, "num_classes", None) or int(enc.labels.max()) + 1
            acc = cluster_accuracy(enc.predicted, enc.labels, k2, classes)
            out["accuracy"], out["nmi"] = acc.accuracy, acc.nmi
        if self.factor_names and enc.factors is not None:
            mig = self.mig(enc)
            out["mig_z"] = mig["z_only"]["score"]
            out["mig_gaps"] = mig["z_only"]["gaps"]  # per factor (normalised); their mean is mig_z
            out["mig_with_y"] = (mig.get("with_y") or {}).get("score")
            out["mig_histogram_z"] = mig["histogram"]["z_only"]["score"]
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
