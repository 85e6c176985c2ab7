"""Data sets: each registers itself; ``load_dataset`` builds one from a recipe's [data] table."""

from imae_kit.data.base import ArrayDataset, Batch, DataSplits, TensorImages
from imae_kit.data import toy  # noqa: F401  (registers toy_shapes)
from imae_kit.data import dsprites  # noqa: F401  (registers dsprites)
from imae_kit.data import mnist  # noqa: F401  (registers mnist, fashion_mnist)
from imae_kit.data import arrays  # noqa: F401  (registers arrays: your own .npz / .npy)
from imae_kit.data import image_folder  # noqa: F401  (registers image_folder: your own image files)
from imae_kit.data.storage import data_root

__all__ = ["ArrayDataset", "Batch", "DataSplits", "TensorImages", "data_root"]
