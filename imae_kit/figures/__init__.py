"""Figures, as PNG: traversals, prototypes, reconstructions (torchvision image grids, labelled with matplotlib;
``images``), the information picture of PAPER.md Figure 2(a), training curves, the MIG, confusion and metric
matrices and a sweep's median-and-band figure (``plots``), all on the pixel layout of ``layout``.

Image panels are drawn at one screen pixel per grid pixel (no resampling): a grid from
``torchvision.utils.make_grid`` with ``GRID_PADDING`` pixels of padding, of ``rows`` x ``cols`` cells of
``cell`` x ``cell`` pixels, is (rows * (cell + GRID_PADDING) + GRID_PADDING) pixels high, and each panel gets
``PANEL_MARGINS`` (left, right, top, bottom) around it for its labels, plus ``TITLE_HEIGHT`` above all panels.
Plots have the fixed sizes given by their ``*_size`` functions. Every figure is saved at ``DPI`` without
tight bounding boxes, so the pixel sizes are exactly these.
"""


from imae_kit.figures.images import (prototype_figure, reconstruction_figure, representative_points,
                                     traversal_figure)
from imae_kit.figures.layout import (DPI, GRID_BACKGROUND, GRID_PADDING, MIN_PANEL_FIGURE_WIDTH, PANEL_COLUMNS,
                                     PANEL_MARGINS, TITLE_HEIGHT, cell_scale, confusion_figure_size,
                                     curves_figure_size, grid_size, image_grid, information_figure_size,
                                     matrix_figure_size, mig_figure_size, new_figure, panel_figure_size, save_figure)
from imae_kit.figures.plots import (band_figure, confusion_figure, information_figure, matrix_figure,
                                    mig_matrix_figure, read_metrics, training_curves_figure)

__all__ = [
    "DPI", "GRID_BACKGROUND", "GRID_PADDING", "MIN_PANEL_FIGURE_WIDTH", "PANEL_COLUMNS", "PANEL_MARGINS",
    "TITLE_HEIGHT", "band_figure", "cell_scale", "confusion_figure", "confusion_figure_size",
    "curves_figure_size", "grid_size", "image_grid", "information_figure", "information_figure_size",
    "matrix_figure", "matrix_figure_size", "mig_figure_size", "mig_matrix_figure", "new_figure",
    "panel_figure_size", "prototype_figure",
    "read_metrics", "reconstruction_figure", "representative_points", "save_figure", "training_curves_figure",
    "traversal_figure",
]
