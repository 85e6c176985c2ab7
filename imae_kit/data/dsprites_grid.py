"""The dSprites factor grid (Matthey et al. 2017) and its official order.

The full grid is 3 shapes x 6 scales x 40 orientations x 32 x 32 positions = 737,280 images; image
``k`` has the factor classes ``np.unravel_index(k, grid.sizes)``, i.e. the official order
``((shape*6 + scale)*40 + orientation)*1024 + posX*32 + posY``. ``latents_classes`` and
``latents_values`` use the official file's columns (color, shape, scale, orientation, posX, posY):
color is always class 0, value 1.0; the shape values are 1, 2, 3 as in the official file.
"""

from __future__ import annotations

import hashlib
import json

import attrs
import numpy as np
import torch

IMAGE_SIZE = 64
ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8  # 512 bytes a packed image
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
LATENT_NAMES = ("color",) + FACTOR_NAMES  # the official file's columns
SHAPE_NAMES = ("square", "ellipse", "heart")


@attrs.frozen
class FactorGrid:
    """The factor values rendered, one tuple per factor; ``shape`` holds shape class ids
    (0 square, 1 ellipse, 2 heart). ``FactorGrid.full()`` is the official grid; tests use small ones.
    Image ``k`` of the grid has classes ``np.unravel_index(k, grid.sizes)`` (C order, posY fastest)."""

    shape: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    scale: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    orientation: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    pos_x: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    pos_y: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))

    @classmethod
    def full(cls) -> "FactorGrid":
        """The official grid: 3 x linspace(0.5, 1, 6) x linspace(0, 2 pi, 40) x linspace(0, 1, 32)^2."""
        return cls(
            shape=(0, 1, 2),
            scale=tuple(float(v) for v in np.linspace(0.5, 1.0, 6)),
            orientation=tuple(float(v) for v in np.linspace(0.0, 2 * np.pi, 40)),
            pos_x=tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
            pos_y=tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
        )

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        """Number of values of each factor (shape, scale, orientation, posX, posY)."""
        return (len(self.shape), len(self.scale), len(self.orientation), len(self.pos_x), len(self.pos_y))

    def __len__(self) -> int:
        return int(np.prod(self.sizes))

    def is_full(self) -> bool:
        """True for the official 737,280-image grid."""
        return self == FactorGrid.full()

    def fingerprint(self) -> str:
        """A short stable hash of the grid values (part of the cache's identity)."""
        text = json.dumps(attrs.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def classes_of(self, index: torch.Tensor) -> torch.Tensor:
        """Factor class indices [B, 5] (shape, scale, orientation, posX, posY) of grid images ``index``."""
        classes = np.unravel_index(np.asarray(index.numpy(), dtype=np.int64), self.sizes)
        return torch.from_numpy(np.stack(classes, axis=1).astype(np.int64, copy=False))

    def latents_classes(self, index: np.ndarray | None = None) -> np.ndarray:
        """[N, 6] int64 in the official columns (color, shape, scale, orientation, posX, posY)."""
        idx = np.arange(len(self), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        out = np.zeros((idx.shape[0], 6), dtype=np.int64)
        out[:, 1:] = np.stack(np.unravel_index(idx, self.sizes), axis=1)
        return out

    def latents_values(self, index: np.ndarray | None = None) -> np.ndarray:
        """[N, 6] float64 in the official columns; color 1.0, shape 1/2/3 as in the official file."""
        classes = self.latents_classes(index)
        out = np.empty(classes.shape, dtype=np.float64)
        out[:, 0] = 1.0
        tables = (np.asarray(self.shape, dtype=np.float64) + 1.0, np.asarray(self.scale),
                  np.asarray(self.orientation), np.asarray(self.pos_x), np.asarray(self.pos_y))
        for k, table in enumerate(tables):
            out[:, k + 1] = table[classes[:, k + 1]]
        return out
