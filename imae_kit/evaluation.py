"""Evaluate a trained model: the paper's measurements as eval.json, figures/*.png and report.md.

``evaluate(model, splits, out_dir=...)`` encodes the evaluation split once and computes, from those tensors,
every number of ../shared/PAPER.md "Experiments to reproduce" that applies to the data: unsupervised accuracy
(if labels), I(x;y), per-dimension information with the bounds of Prop. 1, total correlation, reconstruction
error and posterior KLs, and (if factors) both MIGs over the MIG split. Settings come from a recipe's [eval]
table (``EvalSettings``, in ``imae_kit.metrics.settings``); the report and the headline table are
``imae_kit.report``'s.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from imae_kit import figures
from imae_kit.data.base import DataSplits
from imae_kit.metrics.accuracy import cluster_accuracy
from imae_kit.metrics.encodings import Encodings, encode_dataset, posterior_kls
from imae_kit.metrics.information import (ESTIMATOR_NOTE, aggregate_entropies, continuous_information,
                                          discrete_information, gaussian_bounds, informativeness_order,
                                          subset_indices)
from imae_kit.metrics.mig import compute_mig, label_factors
from imae_kit.metrics.settings import EvalSettings
from imae_kit.metrics.total_correlation import total_correlation_from
from imae_kit.report import write_report
from imae_kit.runs import FIGURES_DIR

__all__ = ["evaluate"]


def _class_names(dataset) -> list[str] | None:
    names = getattr(dataset, "class_names", None)
    return [str(n) for n in names] if names else None


def _category_labels(mapping: list[int] | None, class_names: list[str] | None) -> list[str] | None:
    if mapping is None:
        return None
    return [("" if m < 0 else (class_names[m] if class_names and m < len(class_names) else f"label {m}"))
            for m in mapping]


def _timed(timings: dict, key: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings[key] = round(time.perf_counter() - self.t, 3)
    return _T()


def _mig_encodings(model, splits: DataSplits, settings: EvalSettings, test_enc: Encodings, test_all: bool,
                   generator: torch.Generator, progress: bool) -> Encodings | None:
    dataset = splits.train if settings.mig_split == "train" else splits.test
    if not getattr(dataset, "factor_names", ()):
        return None
    every_point = settings.mig_max_points == 0 or settings.mig_max_points >= len(dataset)
    if dataset is splits.test and test_all and every_point and test_enc.factors is not None:
        return test_enc  # e.g. dSprites, whose evaluation set is its training set: encode it once
    idx = subset_indices(len(dataset), settings.mig_max_points, generator)
    return encode_dataset(model, dataset, batch_size=settings.batch_size, indices=idx, progress=progress,
                          description=f"encoding {settings.mig_split} split for the MIG")


def evaluate(model, splits: DataSplits, *, out_dir: str | Path, settings: EvalSettings | None = None,
             metrics_path: str | Path | None = None, progress: bool = True, recipe_line: str | None = None,
             train_seconds: float | None = None) -> dict[str, Any]:
    """Compute every measurement, write out_dir/eval.json, out_dir/figures/*.png and out_dir/report.md,
    and return the eval.json dict. The model is evaluated in eval mode under torch.no_grad."""
    settings = settings or EvalSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    gen = torch.Generator().manual_seed(settings.seed)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            result = _evaluate(model, splits, out_dir, settings, metrics_path, progress, gen, timings)
    finally:
        model.train(was_training)
    timings["total"] = round(time.perf_counter() - start, 3)
    result["timings"] = timings
    result["train_seconds"] = train_seconds
    result["recipe_line"] = recipe_line
    write_report(out_dir, result)
    return result


def _evaluate(model, splits: DataSplits, out_dir: Path, settings: EvalSettings, metrics_path, progress: bool,
              gen: torch.Generator, timings: dict) -> dict[str, Any]:
    test = splits.test
    k1, k2 = model.latent_continuous, model.latent_discrete
    with _timed(timings, "encode"):
        idx = subset_indices(len(test), settings.max_points, gen)
        enc = encode_dataset(model, test, batch_size=settings.batch_size, indices=idx, reconstruction=True,
                             generator=gen, progress=progress, description="encoding the evaluation split")
    out: dict[str, Any] = {
        "settings": attrs.asdict(settings),
        "data": {"description": splits.description, "split": "test", "points": len(enc),
                 "split_size": len(test), "image_shape": list(test.image_shape)},
        "model": {"latent_continuous": k1, "latent_discrete": k2, "temperature": model.temperature},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads()},
    }

    # -- the discrete code
    with _timed(timings, "discrete"):
        di = discrete_information(enc.probs)
        out["discrete"] = {
            "mutual_information": di.mutual_information, "entropy": di.entropy,
            "conditional_entropy": di.conditional_entropy, "log_k": math.log(k2),
            "category_frequencies": di.marginal.tolist(),
        }
        class_names = _class_names(test)
        mapping = None
        if enc.labels is not None:
            num_classes = test.num_classes or int(enc.labels.max()) + 1
            ca = cluster_accuracy(enc.predicted, enc.labels, k2, num_classes)
            mapping = ca.mapping
            out["accuracy"] = {"accuracy": ca.accuracy, "nmi": ca.nmi, "matching": ca.mapping,
                               "confusion": ca.confusion.tolist(), "class_names": class_names}
        else:
            out["accuracy"] = None

    # -- the continuous code: Prop. 1 bounds, I(x;z_k), total correlation
    with _timed(timings, "continuous"):
        bounds = gaussian_bounds(enc.mu, enc.sigma)
        ent = aggregate_entropies(enc.mu, enc.sigma, num_samples=settings.entropy_samples,
                                  mixture_size=settings.mixture_size, generator=gen,
                                  chunk_elements=settings.chunk_elements, kernel=settings.mixture_kernel, joint=True,
                                  progress=progress)
        ci = continuous_information(ent)
        tc = total_correlation_from(ent)
        order = informativeness_order(ci.per_dimension)
        out["continuous"] = {
            "dimensions": [
                {"index": i, "mutual_information": float(ci.per_dimension[i]),
                 "lower_bound": float(bounds.lower[i]), "upper_bound": float(bounds.upper[i]),
                 "mean_posterior_variance": float(bounds.mean_posterior_variance[i]),
                 "variance_of_means": float(bounds.variance_of_means[i]),
                 "entropy": float(ent.marginal[i]), "conditional_entropy": float(ent.conditional[i])}
                for i in range(k1)],
            "order": order,
            "mutual_information_sum": ci.total,
            "mutual_information_joint": ci.joint,
            "lower_bound_sum": float(bounds.lower.sum()),
            "upper_bound_sum": float(bounds.upper.sum()),
            "samples": ent.samples, "mixture_size": ent.mixture_size, "kernel": ent.kernel,
            "estimator": ESTIMATOR_NOTE,
        }
        out["total_correlation"] = {
            "value": tc.value, "joint_entropy": tc.joint_entropy,
            "sum_of_marginal_entropies": float(tc.marginal_entropies.sum()),
            "samples": tc.samples, "mixture_size": tc.mixture_size,
            "estimator": "sum_k H(z_k) - H(z), both from the same samples; see continuous.estimator",
        }

    # -- reconstruction and posterior KLs
    kl_z, kl_y = posterior_kls(enc.mu, enc.sigma, enc.probs, settings.prior_scale)
    out["reconstruction"] = {
        "nll_sampled": float(enc.nll_sampled.double().mean()),
        "nll_mean_code": float(enc.nll_mean_code.double().mean()),
        "kl_z": kl_z, "kl_y": kl_y, "prior_scale": settings.prior_scale,
        "note": ("nats per image under the Bernoulli decoder: nll_sampled draws (y, z) as in training "
                 "(reparameterised z, Gumbel-softmax y at the model's temperature); nll_mean_code decodes the "
                 "one-hot argmax y and the mean z. kl_z = KL(p(z|x)||N(0, s^2 I)), kl_y = KL(p(y|x)||uniform)."),
    }

    # -- disentanglement
    out["mig"] = None
    if settings.mig:
        with _timed(timings, "mig_encode"):
            test_all = settings.max_points == 0 or settings.max_points >= len(test)
            menc = _mig_encodings(model, splits, settings, enc, test_all, gen, progress)
        if menc is not None and menc.factors is not None:
            mig_set = splits.train if settings.mig_split == "train" else splits.test
            names = tuple(mig_set.factor_names)
            excluded = label_factors(menc.factors, menc.labels)
            z_factors = tuple(n for j, n in enumerate(names) if j not in excluded) or names
            with _timed(timings, "mig"):
                mig = compute_mig(menc.mu, menc.sigma, menc.factors, factor_names=names, probs=menc.probs,
                                  z_factors=z_factors, num_samples=settings.mig_samples,
                                  bins=settings.histogram_bins, generator=gen,
                                  chunk_elements=settings.chunk_elements, kernel=settings.mixture_kernel,
                                  progress=progress)
            mig["split"] = settings.mig_split
            mig["excluded_from_z_only"] = [names[j] for j in excluded]
            out["mig"] = mig

    # -- figures
    out["figures"] = {}
    if settings.figures:
        with _timed(timings, "figures"):
            out["figures"] = _draw(model, test, enc, out, out_dir / FIGURES_DIR, settings, metrics_path, mapping,
                                   class_names, gen)
    return out


def _draw(model, test, enc: Encodings, out: dict, fig_dir: Path, settings: EvalSettings, metrics_path,
          mapping, class_names, gen) -> dict[str, str]:
    made: dict[str, Path | None] = {}
    labels = _category_labels(mapping, class_names)
    cont = out["continuous"]
    per_dim = torch.tensor([d["mutual_information"] for d in cont["dimensions"]])
    made["traversals"] = figures.traversal_figure(
        model, test, enc.probs, enc.mu, enc.index, fig_dir / "traversals.png", order=cont["order"],
        informativeness=per_dim.tolist(), steps=settings.traversal_steps, span=settings.traversal_span,
        max_dims=settings.traversal_dims, category_labels=labels)
    made["prototypes"] = figures.prototype_figure(model, test, enc.probs, enc.mu, enc.index,
                                                  fig_dir / "prototypes.png", category_labels=labels)
    pick = torch.randperm(len(enc), generator=gen)[:settings.reconstruction_images].sort().values
    made["reconstructions"] = figures.reconstruction_figure(model, test, enc.index[pick],
                                                            fig_dir / "reconstructions.png")
    dims = cont["dimensions"]
    made["information"] = figures.information_figure(
        per_dim, torch.tensor([d["lower_bound"] for d in dims]), torch.tensor([d["upper_bound"] for d in dims]),
        torch.tensor([d["mean_posterior_variance"] for d in dims]),
        torch.tensor([d["variance_of_means"] for d in dims]),
        fig_dir / "information.png", discrete_information=out["discrete"]["mutual_information"],
        log_k=out["discrete"]["log_k"])
    if out.get("accuracy"):
        acc = out["accuracy"]
        made["confusion"] = figures.confusion_figure(torch.tensor(acc["confusion"]), acc["matching"],
                                                     fig_dir / "confusion.png", class_names=class_names,
                                                     accuracy=acc["accuracy"])
    if out.get("mig"):
        made["mig_matrix"] = figures.mig_matrix_figure(out["mig"], fig_dir / "mig_matrix.png")
    if metrics_path is not None and Path(metrics_path).exists():
        made["training_curves"] = figures.training_curves_figure(Path(metrics_path),
                                                                 fig_dir / "training_curves.png")
    return {k: f"{FIGURES_DIR}/{Path(v).name}" for k, v in made.items() if v is not None}
