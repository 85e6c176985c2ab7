"""Evaluate a trained model: the paper's measurements as eval.json, figures/*.png and report.md.

``evaluate(model, splits, out_dir=...)`` encodes the evaluation split once and computes, from those tensors,
every number of ../shared/PAPER.md "Experiments to reproduce" that applies to the data: unsupervised accuracy
(if labels), I(x;y), per-dimension information with the bounds of Prop. 1, total correlation, reconstruction
error and posterior KLs, and (if factors) both MIGs over the MIG split. ``headline`` picks the numbers a
table shows. Settings come from a recipe's [eval] table (``EvalSettings``).
"""

from __future__ import annotations

import json
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
from imae_kit.metrics.total_correlation import total_correlation_from
from imae_kit.params import bool_field, choice_field, float_field, int_field

EVAL_FILE = "eval.json"
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"


@attrs.frozen
class EvalSettings:
    """What the evaluation computes and how hard it tries: a recipe's [eval] table. The defaults finish in
    about a minute for MNIST's 10,000 test images on 2 CPU cores (the full-grid dSprites MIG takes longer:
    see benchmarks/mig_speed.py)."""

    batch_size: int = int_field(500, min=1, doc="images per encoder/decoder batch")
    seed: int = int_field(0, min=0, doc="seed of every random draw of the evaluation")
    max_points: int = int_field(0, min=0, doc="evaluate on a random subset of this many test points (0: all)")
    entropy_samples: int = int_field(
        10000, min=1, doc="Monte-Carlo samples for H(z_k), H(z), I(x;z_k) and the total correlation")
    mixture_size: int = int_field(
        10000, min=0, doc="evaluation points in the aggregate-posterior mixture (0: all; else a random subset)")
    mig: bool = bool_field(True, doc="compute the MIGs when the data set has ground-truth factors")
    mig_split: str = choice_field("train", ("train", "test"),
                                  doc="split the MIG is computed over (dSprites: train is the full grid)")
    mig_max_points: int = int_field(0, min=0, doc="points of the MIG split used (0: all, as Chen et al.)")
    mig_samples: int = int_field(10000, min=1, doc="samples of q(z|x) for the MIG entropies (Chen et al.: 10,000)")
    mixture_kernel: str = choice_field("auto", ("auto", "eager", "compiled"),
                                   doc="mixture kernel: eager torch, torch.compile'd, or auto (compile if large)")
    histogram_bins: int = int_field(20, min=2, doc="bins of the histogram MIG (disentanglement_lib: 20)")
    chunk_elements: int = int_field(1 << 21, min=4096,
                                    doc="floats per work buffer of the mixture kernels (memory bound)")
    prior_scale: float = float_field(1.0, min=0.0, min_exclusive=True,
                                     doc="scale s of the N(0, s^2) prior in the reported KL(p(z|x)||r(z))")
    figures: bool = bool_field(True, doc="draw figures/*.png")
    traversal_steps: int = int_field(11, min=2, doc="values of each z_k in a traversal row")
    traversal_span: float = float_field(2.0, min=0.0, min_exclusive=True, doc="traversals sweep [-span, span]")
    traversal_dims: int = int_field(10, min=1, doc="most informative dimensions shown in the traversals")
    reconstruction_images: int = int_field(32, min=1, doc="images in the reconstruction figure")


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
    _write_text(out_dir / EVAL_FILE, json.dumps(result, indent=2) + "\n")
    _write_text(out_dir / REPORT_FILE, report_markdown(result))
    return result


def _write_text(path: Path, text: str) -> None:
    try:
        from imae_kit.runs import atomic_write_text
    except ImportError:  # pragma: no cover - the run layer is always present in a full install
        path.write_text(text, encoding="utf-8")
        return
    atomic_write_text(path, text)


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


def headline(evaluation: dict[str, Any]) -> list[tuple[str, float | str]]:
    """The headline numbers of an eval.json dict as (name, value) rows, in a fixed order; absent ones left out."""
    rows: list[tuple[str, float | str]] = []
    acc = evaluation.get("accuracy")
    if acc:
        rows += [("accuracy of y (best matching)", acc["accuracy"]), ("NMI(y; label)", acc["nmi"])]
    d = evaluation.get("discrete") or {}
    if d:
        rows += [("I(x;y) nats", d["mutual_information"]), ("H(y) nats", d["entropy"]),
                 ("H(y|x) nats", d["conditional_entropy"])]
    c = evaluation.get("continuous") or {}
    if c:
        rows += [("I(x;z) nats (sum over k of I(x;z_k))", c["mutual_information_sum"]),
                 ("I(x;z) nats (joint)", c["mutual_information_joint"])]
    tc = evaluation.get("total_correlation") or {}
    if tc:
        rows.append(("TC(z) nats", tc["value"]))
    r = evaluation.get("reconstruction") or {}
    if r:
        rows += [("reconstruction NLL nats/image", r["nll_sampled"]), ("KL(p(z|x)||r(z)) nats", r["kl_z"]),
                 ("KL(p(y|x)||r(y)) nats", r["kl_y"])]
    m = evaluation.get("mig")
    if m:
        rows.append(("MIG z (sampled, Chen et al.)", m["z_only"]["score"]))
        if m.get("with_y"):
            rows.append(("MIG z and y (sampled)", m["with_y"]["score"]))
        rows.append((f"MIG z (histogram, {m['histogram']['bins']} bins)", m["histogram"]["z_only"]["score"]))
        if m["histogram"].get("with_y"):
            rows.append(("MIG z and y (histogram)", m["histogram"]["with_y"]["score"]))
    t = evaluation.get("timings") or {}
    if "total" in t:
        rows.append(("evaluation seconds", t["total"]))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (the | of H(y|x) would end the cell)."""
    return text.replace("|", "\\|")


def _seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def report_markdown(ev: dict[str, Any]) -> str:
    """The report.md text of an eval.json dict: headline numbers, tables, figures inline, timings."""
    lines = ["# Evaluation report", ""]
    if ev.get("recipe_line"):
        lines += [f"Recipe: `{ev['recipe_line']}`", ""]
    t = ev.get("timings") or {}
    lines += [f"Data: {ev['data']['description']}; evaluated on {ev['data']['points']} of "
              f"{ev['data']['split_size']} test points.",
              f"Training time: {_seconds(ev.get('train_seconds'))}; evaluation time: {_seconds(t.get('total'))}.",
              "", "## Headline numbers", "", "| measure | value |", "|---|---:|"]
    lines += [f"| {_cell(n)} | {_fmt(v)} |" for n, v in headline(ev)]
    c = ev["continuous"]
    lines += ["", "## Continuous dimensions (sorted by I(x;z_k))", "",
              "I(x;z_k) is a Monte-Carlo estimate over the aggregate posterior of "
              f"{c['mixture_size']} evaluation points with {c['samples']} samples; the bounds are PAPER.md eq. 5 "
              "(lower) and eq. 4 (upper). All in nats.", "",
              "| z_k | I(x;z_k) | lower (eq. 5) | upper (eq. 4) | E[sigma_k^2] | Var[mu_k] |",
              "|---|---:|---:|---:|---:|---:|"]
    for i in c["order"]:
        d = c["dimensions"][i]
        lines.append(f"| z{i} | {d['mutual_information']:.3f} | {d['lower_bound']:.3f} | {d['upper_bound']:.3f} | "
                     f"{d['mean_posterior_variance']:.3g} | {d['variance_of_means']:.3g} |")
    m = ev.get("mig")
    if m:
        lines += ["", "## Disentanglement (MIG)", "",
                  f"Over {m['points']} points of the {m['split']} split. Sampled: Chen et al.'s estimator, "
                  f"{m['samples']} samples of q(z|x), each gap normalised by H(v_j). Histogram: "
                  f"{m['histogram']['bins']} equal-width bins of the means, as disentanglement_lib and disent.", "",
                  "| factor v_j | H(v_j) | gap, z only | top, z only | gap, z and y | top, z and y | "
                  "histogram gap, z only | histogram gap, z and y |",
                  "|---|---:|---:|---|---:|---|---:|---:|"]
        with_y, hist = m.get("with_y") or {}, m["histogram"]
        entropies = dict(zip(m["mutual_information"]["factors"], m["mutual_information"]["factor_entropies"]))
        for f in m["mutual_information"]["factors"]:
            cells = [f, _fmt(entropies[f]),
                     _fmt(m["z_only"]["gaps"].get(f, "-")), m["z_only"]["top_latent"].get(f, "-"),
                     _fmt(with_y.get("gaps", {}).get(f, "-")), with_y.get("top_latent", {}).get(f, "-"),
                     _fmt(hist["z_only"]["gaps"].get(f, "-")),
                     _fmt((hist.get("with_y") or {}).get("gaps", {}).get(f, "-"))]
            lines.append("| " + " | ".join(cells) + " |")
        if m.get("excluded_from_z_only"):
            lines.append("")
            lines.append(f"The z-only MIG leaves out {', '.join(m['excluded_from_z_only'])} (the class label, "
                         "which y is meant to carry), as PAPER.md Figure 5; the with-y MIG counts it (Figure 7).")
    figs = ev.get("figures") or {}
    if figs:
        lines += ["", "## Figures", ""]
        captions = {
            "traversals": "Latent traversals: one panel per learnt category, one row per z_k (most informative "
                          "first), starting from the most confident real image (left column)",
            "prototypes": "Category prototypes: decoder(y, mean z of category y), above the most confident example",
            "reconstructions": "Reconstructions below their inputs",
            "information": "Per-dimension information (PAPER.md Figure 2(a))",
            "confusion": "Confusion of learnt categories and labels",
            "mig_matrix": "I(latent; factor) / H(factor), sampled and histogram estimators",
            "training_curves": "Training curves: loss and every term's raw value",
        }
        for key, rel in figs.items():
            lines += [f"### {captions.get(key, key)}", "", f"![{key}]({rel})", ""]
    lines += ["## Timings", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in t.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(ev.get("settings", {}), indent=2), "```", ""]
    return "\n".join(lines)
