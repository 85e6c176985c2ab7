"""dSprites (Matthey et al. 2017): a replica rendered on first use, or the official npz file.

The official file cannot be downloaded here and its generator was never published, so imae-kit
renders a *replica* of the full factor grid (PAPER.md, "Data sets"): 3 shapes x 6 scales x
40 orientations x 32 x 32 positions = 737,280 binary 64x64 images, in the official order
``((shape*6 + scale)*40 + orientation)*1024 + posX*32 + posY``.

The pieces: ``dsprites_grid`` (the factor grid and its order), ``dsprites_render`` (the replica's
geometry and renderer), ``dsprites_cache`` (the packed on-disk cache), ``dsprites_npz`` (the
official file); this module holds the data set itself and registers it.

Memory: the training set keeps the images bit-packed (one bit a pixel, 512 bytes an image,
360 MiB in all) and unpacks each batch (numpy unpackbits); nothing ever holds the unpacked uint8
images (3 GB).

For the metrics: ``DSpritesImages.latents_classes`` and ``.latents_values`` are numpy arrays
[N, 6] with the official file's columns (color, shape, scale, orientation, posX, posY); color is
always class 0, value 1.0; the shape values are 1, 2, 3 as in the official file. ``factors`` in a
Batch are the last five columns of ``latents_classes``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import attrs
import numpy as np
import torch

from imae_kit.data.base import Batch, DataSplits
from imae_kit.data.dsprites_cache import ensure_replica
from imae_kit.data.dsprites_grid import FACTOR_NAMES, IMAGE_SIZE, ROW_BYTES, FactorGrid
from imae_kit.data.dsprites_npz import OFFICIAL_NPZ_NAME, read_official_npz
from imae_kit.params import bool_field, int_field, optional_str_field
from imae_kit.registry import register_dataset


_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


class DSpritesImages:
    """dSprites images kept bit-packed ([N, 512] uint8), unpacked per batch (ArrayDataset).

    The unpacking runs in numpy, on one thread: for batches this small, torch's intra-op threads do not pay.

    ``indices`` selects a subset of the grid (an evaluation subset); ``None`` means all of it.
    ``latents_classes`` / ``latents_values``: [len, 6] numpy arrays, official columns (color, shape,
    scale, orientation, posX, posY) for this set's rows; ``grid_indices``: those rows' grid indices.
    """

    factor_names = FACTOR_NAMES

    def __init__(self, packed: torch.Tensor, grid: FactorGrid, indices: torch.Tensor | None = None) -> None:
        if packed.dtype != torch.uint8 or packed.dim() != 2 or packed.shape[1] != ROW_BYTES:
            raise ValueError(f"packed images must be uint8 [N, {ROW_BYTES}], got {packed.dtype} {tuple(packed.shape)}")
        if packed.shape[0] != len(grid):
            raise ValueError(f"{packed.shape[0]} packed images for a grid of {len(grid)}")
        self.packed = packed
        self._packed_np = packed.numpy()
        self.grid = grid
        self.indices = None if indices is None else indices.to(torch.long)
        self.image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        self.num_classes = len(grid.shape)
        self.factor_sizes = grid.sizes

    def __len__(self) -> int:
        return int(self.packed.shape[0] if self.indices is None else self.indices.shape[0])

    def subset(self, indices: torch.Tensor) -> "DSpritesImages":
        """The rows ``indices`` of this set, sharing its packed images."""
        rows = indices.to(torch.long) if self.indices is None else self.indices[indices]
        return DSpritesImages(self.packed, self.grid, rows)

    def to_device(self, device: torch.device) -> "DSpritesImages":
        """The same set with its packed images on ``device`` (360 MiB), unpacked there batch by batch."""
        moved = DSpritesImages(self.packed, self.grid, self.indices)
        moved.device_packed = self.packed.to(device)
        return moved

    device_packed: torch.Tensor | None = None

    def get_batch(self, index: torch.Tensor) -> Batch:
        """Pixels [B, 4096] float32 in {0, 1}; labels = shape class; factors [B, 5] class indices."""
        rows = index.to(torch.long) if self.indices is None else self.indices[index]
        if self.device_packed is not None:  # unpack on the device: 8 shifts of the packed bytes, MSB first
            packed = self.device_packed[rows.to(self.device_packed.device)]
            x = ((packed.unsqueeze(2) >> _SHIFTS.to(packed.device)) & 1).reshape(len(rows), -1).float()
        else:
            bits = np.unpackbits(self._packed_np[rows.numpy()], axis=1)  # [B, 4096] uint8, MSB first
            x = torch.from_numpy(bits.astype(np.float32))
        factors = self.grid.classes_of(rows)
        return Batch(x=x, labels=factors[:, 0].clone(), factors=factors)

    @property
    def grid_indices(self) -> np.ndarray:
        """Grid index of each row of this set, int64 [len]."""
        if self.indices is None:
            return np.arange(len(self), dtype=np.int64)
        return self.indices.numpy()

    @functools.cached_property
    def latents_classes(self) -> np.ndarray:
        """[len, 6] int64, official columns (color, shape, scale, orientation, posX, posY)."""
        return self.grid.latents_classes(self.grid_indices)

    @functools.cached_property
    def latents_values(self) -> np.ndarray:
        """[len, 6] float64, official columns; shape values 1, 2, 3; color 1."""
        return self.grid.latents_values(self.grid_indices)


@register_dataset("dsprites")
@attrs.frozen
class DSprites:
    """dSprites: 737,280 binary 64x64 images; label = shape (3 classes); factors = (shape, scale,
    orientation, posX, posY) class indices. By default a replica rendered by imae-kit on first use
    and cached; ``path`` gives the official npz instead. Training uses every image; evaluation uses
    all of them (``eval_size = 0``, as Chen et al. 2018 compute MIG) or a fixed random subset."""

    root: str | None = optional_str_field(
        None, doc="data root holding dsprites/, relative to the current directory (default: $IMAE_KIT_DATA, "
                  "else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit)")
    path: str | None = optional_str_field(
        None, doc=f"the official {OFFICIAL_NPZ_NAME}, used instead of the replica (read and packed at each "
                  "load, about 10 s)")
    eval_size: int = int_field(0, min=0, doc="images in the evaluation set: 0 = all 737,280, else a fixed random subset")
    eval_seed: int = int_field(0, min=0, doc="seed of the evaluation subset (independent of the run's seed)")
    auto_fetch: bool = bool_field(True, doc="render the replica into the cache if missing or damaged "
                                            "(false: fail and name `imae-kit data fetch dsprites`)")

    def load(self) -> DataSplits:
        """Load (rendering on first use) and split: train = all images, test = all or a fixed subset."""
        grid = FactorGrid.full()
        if self.path is not None:
            packed = read_official_npz(self.path, grid, quiet=False)
            what = f"dsprites: the official file {Path(self.path).expanduser()}"
        else:
            packed, where = ensure_replica(self.root, grid=grid, render=self.auto_fetch)
            what = f"dsprites: a replica rendered by imae-kit (not the official file), cached at {where}"
        train = DSpritesImages(torch.from_numpy(packed), grid)
        if self.eval_size == 0 or self.eval_size >= len(grid):
            test, which = train, "evaluation on all images"
        else:
            g = torch.Generator().manual_seed(self.eval_seed)
            rows = torch.randperm(len(grid), generator=g)[: self.eval_size].sort().values
            test = train.subset(rows)
            which = f"evaluation on a fixed random subset of {self.eval_size:,} (seed {self.eval_seed})"
        return DataSplits(train=train, test=test,
                          description=f"{what}; {len(grid):,} 64x64 binary images; {which}")
