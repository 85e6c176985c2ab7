"""Figures of a trained run, as PNG: traversals, prototypes, reconstructions (torchvision image grids, labelled
with matplotlib), the information picture of PAPER.md Figure 2(a), training curves and the MIG matrix.

Image panels are drawn at one screen pixel per grid pixel (no resampling): a grid from
``torchvision.utils.make_grid`` with ``GRID_PADDING`` pixels of padding, of ``rows`` x ``cols`` cells of
``cell`` x ``cell`` pixels, is (rows * (cell + GRID_PADDING) + GRID_PADDING) pixels high, and each panel gets
``PANEL_MARGINS`` (left, right, top, bottom) around it for its labels, plus ``TITLE_HEIGHT`` above all panels.
Plots have the fixed sizes given by their ``*_size`` functions. Every figure is saved at ``DPI`` without
tight bounding boxes, so the pixel sizes are exactly these.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

DPI = 100
GRID_PADDING = 2
PANEL_MARGINS = (96, 16, 30, 52)   # left, right, top, bottom, in pixels, around each image panel
TITLE_HEIGHT = 40
PANEL_COLUMNS = 5                   # image panels per row of a multi-panel figure
MIN_PANEL_FIGURE_WIDTH = 560        # narrower panel figures are widened, the panels centred
GRID_BACKGROUND = 0.55             # grey padding between cells, so black and white images both stand out


def cell_scale(height: int, minimum: int) -> int:
    """The integer upscaling that makes an image of ``height`` pixels at least ``minimum`` pixels tall."""
    return max(1, math.ceil(minimum / height))


def grid_size(rows: int, cols: int, cell_h: int, cell_w: int) -> tuple[int, int]:
    """(height, width) in pixels of a make_grid of rows x cols cells with ``GRID_PADDING``."""
    return rows * (cell_h + GRID_PADDING) + GRID_PADDING, cols * (cell_w + GRID_PADDING) + GRID_PADDING


def panel_figure_size(grid_hw: tuple[int, int], panels: int, columns: int = PANEL_COLUMNS) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``panels`` image panels of ``grid_hw``, ``columns`` a row."""
    left, right, top, bottom = PANEL_MARGINS
    ncols = min(columns, panels)
    nrows = math.ceil(panels / ncols)
    width = max(MIN_PANEL_FIGURE_WIDTH, ncols * (grid_hw[1] + left + right))
    return width, nrows * (grid_hw[0] + top + bottom) + TITLE_HEIGHT


def information_figure_size(dims: int) -> tuple[int, int]:
    """(width, height) in pixels of the information picture for ``dims`` dimensions."""
    return max(760, 64 * dims + 220), 720


def curves_figure_size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of the training curves for ``panels`` panels (loss + one per term)."""
    return 1200, 300 * math.ceil(panels / 3) + 60


def mig_figure_size(latents: int, factors: int) -> tuple[int, int]:
    """(width, height) in pixels of the two side-by-side I(latent; factor) heat maps."""
    return 2 * (96 * factors + 150) + 120, 44 * latents + 200


def confusion_figure_size(categories: int, classes: int) -> tuple[int, int]:
    """(width, height) in pixels of the confusion matrix heat map."""
    return max(520, 52 * classes + 260), max(440, 44 * categories + 180)


def _figure(size: tuple[int, int]) -> plt.Figure:
    # + 0.5 so that int(inches * dpi) in the Agg canvas lands on the intended pixel count
    return plt.figure(figsize=((size[0] + 0.5) / DPI, (size[1] + 0.5) / DPI), dpi=DPI)


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return path


@contextmanager
def _inference(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _to_images(pixels: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Flattened pixels [B, D] -> images [B, C, H, W] on the CPU, in [0, 1]."""
    return pixels.detach().float().cpu().clamp(0, 1).reshape(-1, *image_shape)


def image_grid(images: torch.Tensor, cols: int, scale: int = 1) -> np.ndarray:
    """Tile images [N, C, H, W] into a make_grid array [H', W', 3] with nearest-neighbour upscaling ``scale``."""
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(images, nrow=cols, padding=GRID_PADDING, pad_value=GRID_BACKGROUND)
    return grid.permute(1, 2, 0).numpy()


def _cell_centres(count: int, cell: int) -> list[float]:
    return [GRID_PADDING + i * (cell + GRID_PADDING) + (cell - 1) / 2 for i in range(count)]


def _draw_panels(panels: list[dict], path: Path, title: str, columns: int = PANEL_COLUMNS) -> Path:
    """Place image panels (dicts: image, title, xticks, yticks, vline) at 1:1 pixels and save."""
    grid_hw = panels[0]["image"].shape[:2]
    width, height = panel_figure_size(grid_hw, len(panels), columns)
    left, right, top, bottom = PANEL_MARGINS
    ncols = min(columns, len(panels))
    offset = (width - ncols * (grid_hw[1] + left + right)) // 2
    fig = _figure((width, height))
    fig.suptitle(title, fontsize=12, y=1 - 10 / height, va="top")
    for i, panel in enumerate(panels):
        r, c = divmod(i, ncols)
        x0 = offset + c * (grid_hw[1] + left + right) + left
        y0 = height - TITLE_HEIGHT - r * (grid_hw[0] + top + bottom) - top - grid_hw[0]
        ax = fig.add_axes((x0 / width, y0 / height, grid_hw[1] / width, grid_hw[0] / height))
        ax.imshow(panel["image"], interpolation="nearest", aspect="auto")
        ax.set_title(panel.get("title", ""), fontsize=10, pad=4)
        xt, yt = panel.get("xticks", ([], [])), panel.get("yticks", ([], []))
        ax.set_xticks(xt[0], xt[1], fontsize=8)
        ax.set_yticks(yt[0], yt[1], fontsize=8)
        ax.tick_params(length=2, pad=2)
        if panel.get("vline") is not None:
            ax.axvline(panel["vline"], color="tab:red", lw=1.2)
        if panel.get("xlabel"):
            ax.set_xlabel(panel["xlabel"], fontsize=9, labelpad=2)
        for spine in ax.spines.values():
            spine.set_visible(False)
    return _save(fig, path)


def _category_title(c: int, count: int, category_labels: Sequence[str] | None) -> str:
    name = f"y = {c}"
    if category_labels is not None and category_labels[c]:
        name += f" ({category_labels[c]})"
    return f"{name}, n = {count}"


def _value_label(v: float) -> str:
    return "0" if abs(v) < 1e-6 else f"{v:+.3g}"


def representative_points(probs: torch.Tensor) -> list[int]:
    """For each category c, the row with the largest p(y=c|x) (the most confident real example)."""
    return [int(i) for i in probs.argmax(0)]


def traversal_figure(model, dataset, probs: torch.Tensor, mu: torch.Tensor, index: torch.Tensor, path: Path, *,
                     order: Sequence[int], informativeness: Sequence[float] | None = None, steps: int = 11,
                     span: float = 2.0, max_dims: int = 10,
                     category_labels: Sequence[str] | None = None) -> Path:
    """Latent traversals (PAPER.md Figure 2): one panel per learnt category y, starting from the encoding of
    the real image most confidently in that category; one row per z_k (most informative first, ``order``),
    z_k swept over [-span, span] in ``steps`` values with the other dimensions at that image's mean.

    ``probs``, ``mu`` [N, ...] are encodings of ``dataset`` rows ``index``.
    """
    k2 = probs.shape[1]
    dims = list(order)[:max_dims]
    values = torch.linspace(-span, span, steps)
    counts = torch.bincount(probs.argmax(-1), minlength=k2).tolist()
    shape = model.image_shape
    scale = cell_scale(shape[1], 32)
    cell = shape[1] * scale
    panels = []
    with _inference(model):
        device = next(model.parameters()).device
        for c, row in enumerate(representative_points(probs)):
            x = dataset.get_batch(index[row:row + 1]).x
            z = mu[row].repeat(len(dims) * steps, 1)
            for r, d in enumerate(dims):
                z[r * steps:(r + 1) * steps, d] = values
            y = torch.nn.functional.one_hot(torch.full((len(z),), c), k2).float()
            out = model.decode(y.to(device), z.to(device)).base_dist.probs
            decoded = _to_images(out, shape).reshape(len(dims), steps, *shape)
            real = _to_images(x, shape)[None].expand(len(dims), 1, *shape)
            tiles = torch.cat([real, decoded], 1).reshape(-1, *shape)
            image = image_grid(tiles, steps + 1, scale)
            ylabels = [f"z{d}" + ("" if informativeness is None else f"  {informativeness[d]:.2f}") for d in dims]
            xlabels = ["input"] + [_value_label(v) if i in (0, steps // 2, steps - 1) else "" for i, v in
                                   enumerate(values.tolist())]
            panels.append({
                "image": image, "title": _category_title(c, counts[c], category_labels),
                "xticks": (_cell_centres(steps + 1, cell), xlabels),
                "yticks": (_cell_centres(len(dims), cell), ylabels),
                "vline": GRID_PADDING + cell + GRID_PADDING / 2 - 0.5,
                "xlabel": f"z_k from {-span:g} to {span:g}  ({steps} values)",
            })
    title = ("Latent traversals: one panel per learnt category y, one row per z_k (I(x;z_k) in nats, most "
             "informative first)")
    return _draw_panels(panels, path, title)


def prototype_figure(model, dataset, probs: torch.Tensor, mu: torch.Tensor, index: torch.Tensor, path: Path, *,
                     category_labels: Sequence[str] | None = None) -> Path:
    """Category prototypes (PAPER.md Figure 4): the decoder fed each learnt y with the mean z of the points
    assigned to it (argmax p(y|x); the p(y|x)-weighted mean where none is), above the most confident example."""
    k2 = probs.shape[1]
    pred = probs.argmax(-1)
    counts = torch.bincount(pred, minlength=k2)
    onehot = torch.nn.functional.one_hot(pred, k2).float()
    weights = torch.where(counts[None] > 0, onehot, probs.float())
    mean_z = (weights.T @ mu.float()) / weights.sum(0).clamp_min(1e-12)[:, None]
    shape = model.image_shape
    scale = cell_scale(shape[1], 48)
    cell = shape[1] * scale
    with _inference(model):
        device = next(model.parameters()).device
        y = torch.eye(k2)
        protos = _to_images(model.decode(y.to(device), mean_z.to(device)).base_dist.probs, shape)
    examples = _to_images(dataset.get_batch(index[torch.tensor(representative_points(probs))]).x, shape)
    image = image_grid(torch.cat([protos, examples]), k2, scale)
    xlabels = [f"y={c}" + (f"\n{category_labels[c]}" if category_labels and category_labels[c] else "")
               + f"\nn={int(counts[c])}" for c in range(k2)]
    panel = {"image": image, "title": "", "xticks": (_cell_centres(k2, cell), xlabels),
             "yticks": (_cell_centres(2, cell), ["decoder(y,\nmean z of y)", "most confident\nexample"])}
    return _draw_panels([panel], path, "Category prototypes", columns=1)


def reconstruction_figure(model, dataset, index: torch.Tensor, path: Path, *, columns: int = 8) -> Path:
    """Inputs (odd rows) with their reconstructions below them (decoder of argmax y and mean z)."""
    shape = model.image_shape
    scale = cell_scale(shape[1], 32)
    cell = shape[1] * scale
    with _inference(model):
        device = next(model.parameters()).device
        x = dataset.get_batch(index).x
        recon = model.reconstruct(x.to(device))
    inputs, outputs = _to_images(x, shape), _to_images(recon, shape)
    n = len(index)
    rows = []
    for a in range(0, n, columns):
        block_in, block_out = inputs[a:a + columns], outputs[a:a + columns]
        if len(block_in) < columns:  # pad a short last row with blank cells
            blank = torch.ones(columns - len(block_in), *shape) * GRID_BACKGROUND
            block_in, block_out = torch.cat([block_in, blank]), torch.cat([block_out, blank])
        rows += [block_in, block_out]
    image = image_grid(torch.cat(rows), columns, scale)
    ylabels = ["input", "recon."] * (len(rows) // 2)
    panel = {"image": image, "title": f"{n} evaluation images",
             "yticks": (_cell_centres(len(rows), cell), ylabels), "xticks": ([], [])}
    return _draw_panels([panel], path, "Reconstructions (argmax y, mean z)", columns=1)


def information_figure(per_dimension: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                       mean_posterior_variance: torch.Tensor, variance_of_means: torch.Tensor, path: Path, *,
                       discrete_information: float | None = None, log_k: float | None = None) -> Path:
    """PAPER.md Figure 2(a): per continuous dimension, sorted by I(x;z_k), the estimate with the Gaussian bounds
    of eq. 4 and 5 (top), and E[sigma_k^2] and Var[mu_k] (bottom, log scale)."""
    k = len(per_dimension)
    order = sorted(range(k), key=lambda i: (-float(per_dimension[i]), i))
    xs = np.arange(k)
    names = [f"z{i}" for i in order]
    fig = _figure(information_figure_size(k))
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
    return _save(fig, path)


def read_metrics(metrics_path: Path) -> list[dict]:
    """The complete JSON lines of a metrics.jsonl (a torn or unreadable line is skipped)."""
    records = []
    for line in Path(metrics_path).read_text(encoding="utf-8").splitlines():
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
    panels = ["loss"] + terms
    fig = _figure(curves_figure_size(len(panels)))
    nrows = math.ceil(len(panels) / 3)
    axes = fig.subplots(nrows, 3, squeeze=False)
    height = curves_figure_size(len(panels))[1]
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 75 / height, bottom=50 / height, hspace=0.5, wspace=0.28)
    fig.suptitle("Training curves: loss and each term's raw value (nats)", fontsize=12, y=1 - 12 / height,
                 va="top")
    for ax, name in zip(axes.ravel(), panels):
        if name == "loss":
            pts = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
            label, color = "loss (minimised)", "black"
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
    return _save(fig, path)


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
    fig = _figure(mig_figure_size(len(latents), len(factors)))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.07, right=0.9, top=1 - 90 / (44 * len(latents) + 200), bottom=90 / (
        44 * len(latents) + 200), wspace=0.3)
    scores = (f"MIG z only: {mig['z_only']['score']:.3f} sampled / {mig['histogram']['z_only']['score']:.3f} hist.")
    if mig.get("with_y"):
        scores += f"   |   with y: {mig['with_y']['score']:.3f} / {mig['histogram']['with_y']['score']:.3f}"
    fig.suptitle("I(latent; factor) / H(factor)   (bold: top latent per factor)\n" + scores, fontsize=11)
    im = None
    for ax, (title, info, _score) in zip(axes, panels):
        m = np.clip(np.array(info["nats"], dtype=float), 0, None)
        h = np.array(info["factor_entropies"], dtype=float)
        norm = np.divide(m, h[None], out=np.zeros_like(m), where=h[None] > 0)
        im = _heat(ax, norm, info["latents"], info["factors"], title)
    cax = fig.add_axes((0.92, 0.2, 0.015, 0.6))
    fig.colorbar(im, cax=cax)
    return _save(fig, path)


def confusion_figure(confusion: torch.Tensor, mapping: Sequence[int], path: Path, *,
                     class_names: Sequence[str] | None = None, accuracy: float | None = None) -> Path:
    """Confusion matrix of learnt categories (rows, ordered by their matched label) against true labels."""
    counts = confusion.numpy().astype(float)
    k2, classes = counts.shape
    rows = sorted(range(k2), key=lambda c: (mapping[c] if mapping[c] >= 0 else classes + c))
    mat = counts[rows]
    frac = mat / np.maximum(mat.sum(1, keepdims=True), 1)
    fig = _figure(confusion_figure_size(k2, classes))
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
    return _save(fig, path)
