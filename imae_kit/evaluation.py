"""Evaluate a trained model: its metrics as eval.json, figures/*.png and report.md.

``evaluate(model, splits, out_dir=...)`` encodes the evaluation split once and runs the recipe's
``[eval] metrics`` over those tensors, in order (``imae_kit.metrics.base``: each a registered metric with a
typed result). The defaults are every number of ../shared/PAPER.md "Experiments to reproduce" that applies to
the data: unsupervised accuracy (if labels), I(x;y), per-dimension information with the bounds of Prop. 1,
total correlation, reconstruction error and posterior KLs, and (if factors) both MIGs over the MIG split.
Settings come from a recipe's [eval] table (``EvalSettings``, in ``imae_kit.metrics.settings``); the report
and the headline table are ``imae_kit.report``'s.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imae_kit import figures
from imae_kit.data.base import DataSplits
from imae_kit.denormals import denormal_mode
from imae_kit.errors import RecipeError
from imae_kit.memory import keep_freed_memory
from imae_kit.metrics.base import FigureRequest, MetricContext, MetricResult, missing_needs
from imae_kit.metrics.encodings import Encodings, encode_dataset
from imae_kit.metrics.information import subset_indices
from imae_kit.metrics.measures import AccuracyResult, ContinuousResult
from imae_kit.metrics.settings import EvalSettings
from imae_kit.report import write_report
from imae_kit.runs import FIGURES_DIR

__all__ = ["check_metrics", "evaluate"]


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


def check_metrics(settings: EvalSettings, splits: DataSplits) -> None:
    """Refuse, before anything is computed or written, a metric that [eval] metrics names explicitly and the data
    set cannot serve (no labels, or no ground-truth factors on the factor split): a RecipeError, exit 2. The
    defaults skip such metrics silently."""
    if not settings.explicit:
        return
    for request in settings.requests():
        missing = missing_needs(request.metric, splits, settings)
        if missing:
            what = " and ".join("class labels" if m == "labels" else "ground-truth factors" for m in missing)
            where = f"its {settings.mig_split} split" if "factors" in missing else "its evaluation split"
            raise RecipeError(f"[eval] metrics asks for {request.label!r}, which needs {what}, but the data set "
                              f"({splits.description}) has none on {where}; drop {request.label!r} from [eval] "
                              f"metrics (the default metrics skip it)")


def evaluate(model, splits: DataSplits, *, out_dir: str | Path, settings: EvalSettings | None = None,
             metrics_path: str | Path | None = None, progress: bool = True, recipe_line: str | None = None,
             train_seconds: float | None = None) -> dict[str, Any]:
    """Run every metric, write out_dir/eval.json, out_dir/figures/*.png and out_dir/report.md, and return the
    eval.json dict. The model is evaluated in eval mode under torch.no_grad. A metric named in [eval] metrics
    that the data cannot serve is refused first (``check_metrics``), with nothing written."""
    settings = settings or EvalSettings()
    check_metrics(settings, splits)
    keep_freed_memory()  # the encoding batches reuse their pages (imae_kit.memory)
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
    with _timed(timings, "encode"):
        idx = subset_indices(len(test), settings.max_points, gen)
        enc = encode_dataset(model, test, batch_size=settings.batch_size, indices=idx, reconstruction=True,
                             generator=gen, progress=progress, description="encoding the evaluation split")
    out: dict[str, Any] = {
        "settings": settings.as_json(),
        "data": {"description": splits.description, "split": "test", "points": len(enc),
                 "split_size": len(test), "image_shape": list(test.image_shape)},
        "model": {"latent_continuous": model.latent_continuous, "latent_discrete": model.latent_discrete,
                  "temperature": model.temperature},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "denormals": denormal_mode()},
    }
    context = MetricContext(model=model, splits=splits, settings=settings, encodings=enc, generator=gen,
                            progress=progress, timings=timings)
    names: dict[str, str] = {}
    for request in settings.requests():
        names[request.label] = request.name
        skipped = (request.name == "mig" and not settings.mig) or missing_needs(request.metric, splits, settings)
        result = None
        if not skipped:
            context.label = request.label
            with _timed(timings, request.label):
                result = request.metric(context)
        if result is not None:
            context.results[request.label] = result
        out[request.label] = None if result is None else result.to_json()
    out["metrics"] = names

    out["figures"] = {}
    if settings.figures:
        with _timed(timings, "figures"):
            out["figures"] = _draw(model, test, enc, context.results, names, out_dir / FIGURES_DIR, settings,
                                   metrics_path, gen)
    return out


def _first(results: dict[str, MetricResult], kind: type) -> Any:
    return next((r for r in results.values() if isinstance(r, kind)), None)


def _draw(model, test, enc: Encodings, results: dict[str, MetricResult], names: dict[str, str], fig_dir: Path,
          settings: EvalSettings, metrics_path, gen) -> dict[str, str]:
    made: dict[str, Path | None] = {}
    accuracy, continuous = _first(results, AccuracyResult), _first(results, ContinuousResult)
    labels = _category_labels(accuracy.matching if accuracy else None, accuracy.class_names if accuracy else None)
    k1 = enc.mu.shape[1]
    order = continuous.order if continuous else list(range(k1))
    informativeness = continuous.column("mutual_information") if continuous else None
    made["traversals"] = figures.traversal_figure(
        model, test, enc.probs, enc.mu, enc.index, fig_dir / "traversals.png", order=order,
        informativeness=informativeness, steps=settings.traversal_steps, span=settings.traversal_span,
        max_dims=settings.traversal_dims, category_labels=labels)
    made["prototypes"] = figures.prototype_figure(model, test, enc.probs, enc.mu, enc.index,
                                                  fig_dir / "prototypes.png", category_labels=labels)
    pick = torch.randperm(len(enc), generator=gen)[:settings.reconstruction_images].sort().values
    made["reconstructions"] = figures.reconstruction_figure(model, test, enc.index[pick],
                                                            fig_dir / "reconstructions.png")
    for label, result in results.items():
        for request in result.figures(results):
            key = request.name if label == names[label] else f"{label}_{request.name}"
            made[key] = draw_figure(request, fig_dir / f"{key}.png")
    if metrics_path is not None and Path(metrics_path).exists():
        made["training_curves"] = figures.training_curves_figure(Path(metrics_path),
                                                                 fig_dir / "training_curves.png")
    return {k: f"{FIGURES_DIR}/{Path(v).name}" for k, v in made.items() if v is not None}


def draw_figure(request: FigureRequest, path: Path) -> Path | None:
    """Draw one figure a metric result asked for, by its kind."""
    d = request.data
    if request.kind == "information":
        return figures.information_figure(
            torch.tensor(d["per_dimension"]), torch.tensor(d["lower"]), torch.tensor(d["upper"]),
            torch.tensor(d["mean_posterior_variance"]), torch.tensor(d["variance_of_means"]), path,
            discrete_information=d.get("discrete_information"), log_k=d.get("log_k"))
    if request.kind == "confusion":
        return figures.confusion_figure(torch.tensor(d["confusion"]), d["matching"], path,
                                        class_names=d.get("class_names"), accuracy=d.get("accuracy"))
    if request.kind == "mig_matrix":
        return figures.mig_matrix_figure(d["mig"], path)
    if request.kind == "matrix":
        return figures.matrix_figure(np.asarray(d["matrix"], dtype=float), d["rows"], d["columns"], path,
                                     title=d.get("title", request.caption), vmax=d.get("vmax"))
    if request.kind == "custom" and request.draw is not None:
        return request.draw(path)
    raise ValueError(f"figure {request.name!r}: unknown kind {request.kind!r} (information, confusion, mig_matrix, "
                     f"matrix, or custom with a draw function)")
