"""Plots of an evaluation: the information picture (PAPER.md Figure 2(a)), training curves, the MIG matrix,
the confusion matrix, a metric's matrix (``matrix_figure``); and the median-and-band figure of a sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from imae_kit.figures.layout import (confusion_figure_size, curves_figure_size, information_figure_size,
                                     matrix_figure_size, mig_figure_size, new_figure, save_figure)


def information_figure(per_dimension: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                       mean_posterior_variance: torch.Tensor, variance_of_means: torch.Tensor, path: Path, *,
                       discrete_information: float | None = None, log_k: float | None = None) -> Path:
    """PAPER.md Figure 2(a): per continuous dimension, sorted by I(x;z_k), the estimate with the Gaussian bounds
    of eq. 4 and 5 (top), and E[sigma_k^2] and Var[mu_k] (bottom, log scale)."""
    k = len(per_dimension)
    order = sorted(range(k), key=lambda i: (-float(per_dimension[i]), i))
    xs = np.arange(k)
    names = [f"z{i}" for i in order]
    fig = new_figure(information_figure_size(k))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"hspace": 0.16, "height_ratios": (1.2, 1)})
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.07)
    est = np.array([float(per_dimension[i]) for i in order])
    lo = np.array([float(lower[i]) for i in order])
    hi = np.array([float(upper[i]) for i in order])
    top.bar(xs, est, width=0.6, color="tab:blue", label="I(x; z_k) estimate")
    top.vlines(xs, lo, hi, color="black", lw=2, label="Gaussian bounds (eq. 5 lower, eq. 4 upper)")
    top.scatter(xs, lo, marker="_", s=120, color="black")
    top.scatter(xs, hi, marker="_", s=120, color="black")
    top.set_ylabel("nats")
    top.legend(fontsize=9, loc="upper right")
    top.grid(axis="y", alpha=0.3)
    title = "Information per continuous dimension, sorted"
    if discrete_information is not None:
        title += f"   |   I(x;y) = {discrete_information:.3f} nats"
        if log_k is not None:
            title += f" (log K2 = {log_k:.3f})"
    top.set_title(title, fontsize=11)
    ev = np.array([float(mean_posterior_variance[i]) for i in order])
    vm = np.array([float(variance_of_means[i]) for i in order])
    bottom.bar(xs - 0.18, ev, width=0.36, color="tab:orange", label="E[sigma_k^2]")
    bottom.bar(xs + 0.18, vm, width=0.36, color="tab:green", label="Var[mu_k]")
    bottom.set_yscale("log")
    bottom.set_ylabel("variance")
    bottom.set_xticks(xs, names)
    bottom.legend(fontsize=9, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False,
                  borderaxespad=0.2)
    bottom.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def read_metrics(metrics_path: Path) -> list[dict]:
    """The complete JSON lines of a metrics.jsonl (a torn or unreadable line is skipped)."""
    records = []
    for line in Path(metrics_path).read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            records.append(rec)
    return records


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


EVAL_CURVES = {"accuracy": "accuracy of y", "mutual_information_y": "I(x;y)", "active_dimensions": "active z_k",
               "total_correlation": "TC(z), nats",
               "mig_z": "MIG z (sampled)", "mig_with_y": "MIG with y (sampled)"}


def training_curves_figure(metrics_path: Path, path: Path) -> Path | None:
    """The loss and every term's raw value against the step, from metrics.jsonl; None if it has no records."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    terms: list[str] = []
    for rec in records:
        for name in rec.get("terms", {}):
            if name not in terms:
                terms.append(name)
    watched = [k for k in EVAL_CURVES if any(isinstance((r.get("eval") or {}).get(k), (int, float)) for r in records)]
    panels = ["loss"] + terms + [f"eval:{k}" for k in watched]
    fig = new_figure(curves_figure_size(len(panels)))
    nrows = math.ceil(len(panels) / 3)
    axes = fig.subplots(nrows, 3, squeeze=False)
    height = curves_figure_size(len(panels))[1]
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 75 / height, bottom=50 / height, hspace=0.5, wspace=0.28)
    title = "Training curves: loss and each term's raw value (nats)"
    if watched:
        title += "; evaluation on a fixed subset (train.eval_every)"
    fig.suptitle(title, fontsize=12, y=1 - 12 / height, va="top")
    for ax, name in zip(axes.ravel(), panels):
        if name == "loss":
            pts = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
            label, color = "loss (minimised)", "black"
        elif name.startswith("eval:"):
            key = name[len("eval:"):]
            pts = [(r["step"], r["eval"][key]) for r in records
                   if isinstance((r.get("eval") or {}).get(key), (int, float))]
            label, color = f"{EVAL_CURVES[key]} (subset)", "tab:green"
        else:
            pts = [(r["step"], r["terms"][name]["value"]) for r in records
                   if isinstance(r.get("terms", {}).get(name, {}).get("value"), (int, float))]
            last = next(r["terms"][name] for r in reversed(records) if name in r.get("terms", {}))
            label = f"{name} ({last.get('sense', '?')}, weight {last.get('weight', float('nan')):.3g})"
            color = "tab:blue"
        if not pts:
            ax.set_visible(False)
            continue
        steps, vals = np.array(pts, dtype=float).T
        window = max(1, len(vals) // 50)
        ax.plot(steps, vals, color=color, alpha=0.3 if window > 1 else 1.0, lw=0.8)
        if window > 1:
            ax.plot(steps, _smooth(vals, window), color=color, lw=1.5)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    return save_figure(fig, path)


def _heat(ax, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str, vmax: float = 1.0):
    im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.set_title(title, fontsize=10)
    best = matrix.argmax(0) if matrix.size else []
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if v > 0.6 * vmax else "white", fontweight="bold" if best[j] == i else "normal")
    return im


def mig_matrix_figure(mig: dict, path: Path) -> Path:
    """Heat maps of I(latent; v_j) / H(v_j) from ``compute_mig``'s dict: sampled estimator and histogram."""
    panels = [("sampled (Chen et al.)", mig["mutual_information"], mig.get("with_y") or mig["z_only"]),
              (f"histogram ({mig['histogram']['bins']} bins of the means)", mig["histogram"]["mutual_information"],
               mig["histogram"].get("with_y") or mig["histogram"]["z_only"])]
    latents, factors = panels[0][1]["latents"], panels[0][1]["factors"]
    fig = new_figure(mig_figure_size(len(latents), len(factors)))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.07, right=0.9, top=1 - 90 / (44 * len(latents) + 200), bottom=90 / (
        44 * len(latents) + 200), wspace=0.3)
    scores = (f"MIG z only: {mig['z_only']['score']:.3f} sampled / {mig['histogram']['z_only']['score']:.3f} hist.")
    if mig.get("with_y"):
        scores += f"   |   with y: {mig['with_y']['score']:.3f} / {mig['histogram']['with_y']['score']:.3f}"
    fig.suptitle("I(latent; factor) / H(factor)   (bold: top latent per factor)\n" + scores, fontsize=11)
    im = None
    for panel, (ax, (title, info, _score)) in enumerate(zip(axes, panels)):
        m = np.clip(np.array(info["nats"], dtype=float), 0, None)
        h = np.array(info["factor_entropies"], dtype=float)
        norm = np.divide(m, h[None], out=np.zeros_like(m), where=h[None] > 0)
        bounded = (mig.get("bounded_latents") or {}) if panel == 0 else {}  # the sampled panel only
        names = [f"{n}*" if n in bounded else n for n in info["latents"]]
        if bounded:
            title += f"\n* bounded, not estimated: I(x; z_k) < {mig.get('bound_below', 0):g} nats"
        im = _heat(ax, norm, names, info["factors"], title)
    cax = fig.add_axes((0.92, 0.2, 0.015, 0.6))
    fig.colorbar(im, cax=cax)
    return save_figure(fig, path)


def matrix_figure(matrix: np.ndarray, rows: Sequence[str], columns: Sequence[str], path: Path, *, title: str,
                  vmax: float | None = None) -> Path:
    """One heat map of ``matrix`` [rows, columns] with its values written in (bold: the largest of each column),
    e.g. a metric's importance or information matrix; colours from 0 to ``vmax`` (default the largest value)."""
    m = np.clip(np.asarray(matrix, dtype=float), 0, None)
    top = float(vmax) if vmax else max(float(m.max()) if m.size else 0.0, 1e-12)
    size = matrix_figure_size(len(rows), len(columns))
    fig = new_figure(size)
    ax = fig.add_axes((110 / size[0], 70 / size[1], 1 - 200 / size[0], 1 - 150 / size[1]))
    im = _heat(ax, m, rows, columns, "", vmax=top)
    fig.suptitle(title, fontsize=11)
    cax = fig.add_axes((1 - 70 / size[0], 0.2, 0.015, 0.6))
    fig.colorbar(im, cax=cax)
    return save_figure(fig, path)


def confusion_figure(confusion: torch.Tensor, mapping: Sequence[int], path: Path, *,
                     class_names: Sequence[str] | None = None, accuracy: float | None = None) -> Path:
    """Confusion matrix of learnt categories (rows, ordered by their matched label) against true labels."""
    counts = confusion.numpy().astype(float)
    k2, classes = counts.shape
    rows = sorted(range(k2), key=lambda c: (mapping[c] if mapping[c] >= 0 else classes + c))
    mat = counts[rows]
    frac = mat / np.maximum(mat.sum(1, keepdims=True), 1)
    fig = new_figure(confusion_figure_size(k2, classes))
    ax = fig.add_axes((0.2, 0.16, 0.72, 0.72))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    names = list(class_names) if class_names else [str(c) for c in range(classes)]
    ax.set_xticks(range(classes), names, fontsize=9, rotation=45 if max(len(n) for n in names) > 3 else 0)
    ax.set_yticks(range(k2), [f"y={c}" + (f" -> {names[mapping[c]]}" if mapping[c] >= 0 else "") for c in rows],
                  fontsize=9)
    if k2 * classes <= 400:
        for i in range(k2):
            for j in range(classes):
                ax.text(j, i, f"{int(mat[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xlabel("true label")
    ax.set_ylabel("learnt category (matched label)")
    title = "Learnt categories against labels\n(colour: row-normalised; numbers: counts)"
    if accuracy is not None:
        title = f"Learnt categories against labels: best-matching accuracy {accuracy:.3f}\n" \
                "(colour: row-normalised; numbers: counts)"
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def band_figure(panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[tuple]]]]], path: Path, *, x_label: str,
                title: str) -> Path:
    """One plot per (name, labelled series) panel against ``x_label``: each series of (x, median, low, high,
    count) points drawn as its median line over its shaded band (the sweep figure; empty series skipped)."""
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = new_figure((380 * cols, 300 * nrows + 40))
    for i, (name, labelled) in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for label, series in labelled:
            if not series:
                continue
            xs, med, lo, hi, _ = zip(*series)
            line, = ax.plot(xs, med, marker="o", markersize=3, label=label)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save_figure(fig, path)
