"""Data sets: each registers itself; ``load_dataset`` builds one from a recipe's [data] table."""

from imae_kit.data.base import ArrayDataset, Batch, DataSplits, TensorImages
from imae_kit.data import toy  # noqa: F401  (registers toy_shapes)

__all__ = ["ArrayDataset", "Batch", "DataSplits", "TensorImages"]
