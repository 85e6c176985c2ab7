"""The pixel layout every figure shares (the rule is in ``imae_kit.figures``): constants, sizes, a blank
figure, saving, image grids and image panels."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from imae_kit.atomic import atomic_file  # noqa: E402
from imae_kit.errors import refused_writes  # noqa: E402

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


def matrix_figure_size(rows: int, columns: int) -> tuple[int, int]:
    """(width, height) in pixels of one labelled heat map of ``rows`` x ``columns`` cells."""
    return 96 * columns + 200, 44 * rows + 150


def confusion_figure_size(categories: int, classes: int) -> tuple[int, int]:
    """(width, height) in pixels of the confusion matrix heat map."""
    return max(520, 52 * classes + 260), max(440, 44 * categories + 180)


def new_figure(size: tuple[int, int]) -> plt.Figure:
    """A blank figure of exactly ``size`` = (width, height) pixels at ``DPI``."""
    # + 0.5 so that int(inches * dpi) in the Agg canvas lands on the intended pixel count
    return plt.figure(figsize=((size[0] + 0.5) / DPI, (size[1] + 0.5) / DPI), dpi=DPI)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``DPI`` (no tight bounding box: the pixel size is kept), atomically; close it.
    A write the disk refuses raises DiskWriteError (the previous PNG, if any, is kept)."""
    path = Path(path)
    try:
        with refused_writes(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            fig.savefig(handle, format="png", dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return path


def image_grid(images: torch.Tensor, cols: int, scale: int = 1) -> np.ndarray:
    """Tile images [N, C, H, W] into a make_grid array [H', W', 3] with nearest-neighbour upscaling ``scale``."""
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    grid = make_grid(images, nrow=cols, padding=GRID_PADDING, pad_value=GRID_BACKGROUND)
    return grid.permute(1, 2, 0).numpy()


def cell_centres(count: int, cell: int) -> list[float]:
    """Pixel centres of ``count`` cells of ``cell`` pixels along one axis of a make_grid."""
    return [GRID_PADDING + i * (cell + GRID_PADDING) + (cell - 1) / 2 for i in range(count)]


def draw_panels(panels: list[dict], path: Path, title: str, columns: int = PANEL_COLUMNS) -> Path:
    """Place image panels (dicts: image, title, xticks, yticks, vline) at 1:1 pixels and save."""
    grid_hw = panels[0]["image"].shape[:2]
    width, height = panel_figure_size(grid_hw, len(panels), columns)
    left, right, top, bottom = PANEL_MARGINS
    ncols = min(columns, len(panels))
    offset = (width - ncols * (grid_hw[1] + left + right)) // 2
    fig = new_figure((width, height))
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
    return save_figure(fig, path)
