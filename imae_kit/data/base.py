"""What every data set provides: batches of flattened pixels with their labels and factors."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs
import torch


@attrs.frozen(eq=False)
class Batch:
    """A batch: ``x`` [B, D] float32 in [0, 1]; ``labels`` [B] long or None;
    ``factors`` [B, F] long class indices of the ground-truth factors, or None."""

    x: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None


@runtime_checkable
class ArrayDataset(Protocol):
    """A data set read by index batches (no per-item collation)."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int | None            # number of label classes, or None
    factor_names: tuple[str, ...]      # ground-truth factors, () if none
    factor_sizes: tuple[int, ...]      # number of classes of each factor

    def __len__(self) -> int: ...

    def get_batch(self, index: torch.Tensor) -> Batch:
        """Return the examples at ``index`` (a 1-D long tensor)."""
        ...


@attrs.frozen(eq=False)
class DataSplits:
    """What a data set entry's ``load()`` returns: a training set, an evaluation set and a one-line
    description (say 'replica' where the data is not the official file)."""

    train: ArrayDataset
    test: ArrayDataset
    description: str


@attrs.frozen(eq=False)
class TensorImages:
    """An in-memory data set: ``images`` [N, H, W] or [N, C, H, W], uint8 (0..255) or bool, or float in [0, 1].

    Pixels are converted to float32 per batch, so a uint8 store costs one byte a pixel. ``class_names``
    (optional) names the label classes for the accuracy's report.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    factors: torch.Tensor | None = None
    num_classes: int | None = None
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image (C = 1 for [N, H, W] images)."""
        channels = int(self.images.shape[1]) if self.images.dim() == 4 else 1
        return (channels, int(self.images.shape[-2]), int(self.images.shape[-1]))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get_batch(self, index: torch.Tensor) -> Batch:
        """Return the examples at ``index`` as float32 pixels in [0, 1]."""
        raw = self.images[index]
        if raw.dtype == torch.uint8:
            x = raw.to(torch.float32).div_(255.0)
        else:
            x = raw.to(torch.float32)
        return Batch(
            x=x.reshape(x.shape[0], -1),
            labels=None if self.labels is None else self.labels[index],
            factors=None if self.factors is None else self.factors[index],
        )
