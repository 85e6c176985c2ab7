"""Image figures of a trained model: latent traversals, category prototypes and reconstructions."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch

from imae_kit.figures.layout import GRID_BACKGROUND, GRID_PADDING, cell_centres, cell_scale, draw_panels, image_grid


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
                "xticks": (cell_centres(steps + 1, cell), xlabels),
                "yticks": (cell_centres(len(dims), cell), ylabels),
                "vline": GRID_PADDING + cell + GRID_PADDING / 2 - 0.5,
                "xlabel": f"z_k from {-span:g} to {span:g}  ({steps} values)",
            })
    title = ("Latent traversals: one panel per learnt category y, one row per z_k (I(x;z_k) in nats, most "
             "informative first)")
    return draw_panels(panels, path, title)


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
    panel = {"image": image, "title": "", "xticks": (cell_centres(k2, cell), xlabels),
             "yticks": (cell_centres(2, cell), ["decoder(y,\nmean z of y)", "most confident\nexample"])}
    return draw_panels([panel], path, "Category prototypes", columns=1)


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
             "yticks": (cell_centres(len(rows), cell), ylabels), "xticks": ([], [])}
    return draw_panels([panel], path, "Reconstructions (argmax y, mean z)", columns=1)
