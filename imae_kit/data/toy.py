"""A tiny built-in data set for tests and smoke runs: three glyphs at 7 x 7 positions on 12 x 12."""

from __future__ import annotations

import attrs
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.params import int_field
from imae_kit.registry import register_dataset

TOY_SIZE = 12
TOY_GLYPH = 6
TOY_SHAPES = ("bar_horizontal", "bar_vertical", "square")


def toy_glyphs() -> torch.Tensor:
    """The three 6 x 6 glyph masks, shape [3, 6, 6], bool."""
    g = torch.zeros(3, TOY_GLYPH, TOY_GLYPH, dtype=torch.bool)
    g[0, 2:4, :] = True
    g[1, :, 2:4] = True
    g[2, 1:5, 1:5] = True
    return g


def render_toy() -> tuple[torch.Tensor, torch.Tensor]:
    """All 3 x 7 x 7 images [147, 12, 12] (bool) and factor classes [147, 3] (shape, posY, posX)."""
    glyphs = toy_glyphs()
    positions = TOY_SIZE - TOY_GLYPH + 1
    images, factors = [], []
    for s in range(3):
        for r in range(positions):
            for c in range(positions):
                img = torch.zeros(TOY_SIZE, TOY_SIZE, dtype=torch.bool)
                img[r:r + TOY_GLYPH, c:c + TOY_GLYPH] = glyphs[s]
                images.append(img)
                factors.append((s, r, c))
    return torch.stack(images), torch.tensor(factors, dtype=torch.long)


@register_dataset("toy_shapes")
@attrs.frozen
class ToyShapes:
    """Three glyphs (two bars and a square) at every one of 7 x 7 positions on a 12 x 12 canvas:
    147 distinct binary images, label = glyph, factors = (shape, posY, posX). ``repeats`` copies."""

    repeats: int = int_field(4, min=1, doc="copies of the 147 images in the training set")

    def load(self) -> DataSplits:
        """Build the training set (``repeats`` copies) and the evaluation set (one copy)."""
        images, factors = render_toy()
        positions = TOY_SIZE - TOY_GLYPH + 1
        common = dict(num_classes=3, factor_names=("shape", "posY", "posX"),
                      factor_sizes=(3, positions, positions))
        test = TensorImages(images=images, labels=factors[:, 0], factors=factors, **common)
        train = TensorImages(
            images=images.repeat(self.repeats, 1, 1),
            labels=factors[:, 0].repeat(self.repeats),
            factors=factors.repeat(self.repeats, 1),
            **common,
        )
        return DataSplits(train=train, test=test, description="toy_shapes: 3 glyphs x 7 x 7 positions, 12x12 binary")
