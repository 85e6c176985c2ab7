"""Figures: produced by an evaluation of a small untrained model on the toy data, each a PNG of the size
its layout rule says (image panels at one screen pixel per grid pixel, plots at fixed sizes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from imae_kit import figures
from imae_kit.data.toy import ToyShapes
from imae_kit.evaluation import evaluate
from imae_kit.metrics.settings import EvalSettings
from imae_kit.model import Decoder, Encoder, HybridAutoencoder
from imae_kit.networks import MLP

K1, K2 = 4, 3
TERMS = ("reconstruction", "discrete_mi", "vat", "marginal_kl", "total_correlation")


def small_model(seed: int = 0, batch_norm: bool = False) -> HybridAutoencoder:
    torch.manual_seed(seed)
    d = 12 * 12
    enc_body, enc_out = MLP(hidden=(32,), batch_norm=batch_norm).build(d)
    dec_body, dec_out = MLP(hidden=(32,)).build(K1 + K2)
    return HybridAutoencoder(Encoder(enc_body, enc_out, K1, K2), Decoder(dec_body, dec_out, d), (1, 12, 12), 0.67)


def write_metrics(path, steps: int = 60) -> None:
    with open(path, "w") as f:
        for step in range(0, steps * 10, 10):
            terms = {name: {"value": -100.0 / (1 + step) if name == "reconstruction" else math.log1p(step) * 0.1,
                            "weight": 1.0, "contribution": 0.0,
                            "sense": "maximize" if name in ("reconstruction", "discrete_mi") else "minimize"}
                     for name in TERMS}
            f.write(json.dumps({"step": step, "epoch": step // 100, "loss": 100.0 / (1 + step), "lr": 1e-3,
                                "terms": terms}) + "\n")
        f.write('{"step": 999, "loss": 1.0, "ter')  # a torn last line, as after a kill mid-write


def _grid(rows: int, cols: int, cell: int) -> tuple[int, int]:
    """make_grid arithmetic with 2 pixels of padding: (height, width)."""
    return rows * (cell + 2) + 2, cols * (cell + 2) + 2


def _panels(grid_hw, n, columns=5) -> tuple[int, int]:
    left, right, top, bottom = figures.PANEL_MARGINS
    ncols = min(columns, n)
    width = max(figures.MIN_PANEL_FIGURE_WIDTH, ncols * (grid_hw[1] + left + right))
    return width, math.ceil(n / ncols) * (grid_hw[0] + top + bottom) + figures.TITLE_HEIGHT


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    write_metrics(out / "metrics.jsonl")
    settings = EvalSettings(entropy_samples=400, mig_samples=400, traversal_steps=9)
    ev = evaluate(small_model(), ToyShapes().load(), out_dir=out, settings=settings,
                  metrics_path=out / "metrics.jsonl", progress=False)
    return out, ev


def test_every_figure_is_a_png_of_the_expected_size(evaluated):
    out, ev = evaluated
    # toy images are 12 x 12: traversal cells upscaled x3 (>= 32 px), prototypes x4 (>= 48), reconstructions x3
    expected = {
        "traversals": _panels(_grid(K1, 9 + 1, 36), K2),
        "prototypes": _panels(_grid(2, K2, 48), 1),
        "reconstructions": _panels(_grid(8, 8, 36), 1),
        "information": (760, 720),
        "confusion": (520, 440),
        "mig_matrix": (2 * (96 * 3 + 150) + 120, 44 * (K1 + 1) + 200),
        "training_curves": (1200, 300 * math.ceil((1 + len(TERMS)) / 3) + 60),
    }
    assert set(ev["figures"]) == set(expected)
    for name, size in expected.items():
        path = out / ev["figures"][name]
        assert path.is_file() and path.stat().st_size > 1000, name
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.size == size, (name, img.size, size)
            pixels = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32))
        assert pixels.std() > 5, f"{name} looks blank"


def test_image_grids_are_not_resampled():
    images = torch.rand(6, 1, 5, 5)
    grid = figures.image_grid(images, cols=3, scale=2)
    assert grid.shape[:2] == _grid(2, 3, 10)
    # each source pixel becomes a 2 x 2 block, after the 2-pixel padding
    assert torch.allclose(torch.from_numpy(grid[2:4, 2:4, 0]), images[0, 0, 0, 0].expand(2, 2))


def test_training_curves_skip_torn_lines_and_empty_files(tmp_path):
    write_metrics(tmp_path / "metrics.jsonl", steps=3)
    assert len(figures.read_metrics(tmp_path / "metrics.jsonl")) == 3
    (tmp_path / "empty.jsonl").write_text("")
    assert figures.training_curves_figure(tmp_path / "empty.jsonl", tmp_path / "x.png") is None


def test_a_metric_matrix_figure_has_its_layout_size(tmp_path):
    from imae_kit.evaluation import draw_figure
    from imae_kit.metrics import FigureRequest

    request = FigureRequest("m", "a matrix", "matrix", {"matrix": [[0.1, 0.9, 0.0]] * 5, "rows": list("abcde"),
                                                       "columns": ["x", "y", "z"], "title": "t"})
    path = draw_figure(request, tmp_path / "m.png")
    with Image.open(path) as img:
        assert img.size == figures.matrix_figure_size(5, 3) == (96 * 3 + 200, 44 * 5 + 150)
        assert np.asarray(img.convert("L"), dtype=np.float32).std() > 5
    with pytest.raises(ValueError, match="unknown kind"):
        draw_figure(FigureRequest("n", "?", "pie"), tmp_path / "n.png")


def test_training_curves_draw_the_eval_curves_when_the_run_has_them(tmp_path):
    """Records with an "eval" block (train.eval_every) add one panel per evaluation number: a taller figure."""
    import json

    from PIL import Image

    from imae_kit.figures.plots import training_curves_figure

    rec = {"step": 1, "loss": 2.0, "terms": {"reconstruction": {"value": -2.0, "weight": 1.0, "sense": "maximize"}}}
    plain, watched = tmp_path / "plain.jsonl", tmp_path / "watched.jsonl"
    plain.write_text("".join(json.dumps({**rec, "step": s}) + "\n" for s in (1, 2, 3)))
    watched.write_text("".join(json.dumps({**rec, "step": s, "eval": {"accuracy": 0.1 * s, "mig_z": 0.01 * s,
                                                                      "mutual_information_y": 1.0}}) + "\n"
                               for s in (1, 2, 3)))
    a = Image.open(training_curves_figure(plain, tmp_path / "a.png"))
    b = Image.open(training_curves_figure(watched, tmp_path / "b.png"))
    assert b.size[1] > a.size[1] and b.size[0] == a.size[0]
