"""Your own images in a folder: torchvision's ``ImageFolder`` layout, ``PATH/<class>/<image>``.

Labels come from the sub-folders (sorted names, class 0 first; ``class_names`` are the folder names).
Every image is read once, converted to grey (``channels = 1``, torchvision's ``Grayscale``: ITU-R 601-2 luma)
or kept RGB (``channels = 3``), resized to ``size`` x ``size`` (bilinear with antialiasing; the aspect ratio
is not kept) and held in memory as uint8, so a batch's pixels are pixel / 255 in [0, 1]. The test set is a
``test_fraction`` of the images drawn with ``seed`` (0: evaluate on the training images). No factors.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from imae_kit.data.arrays import drawn_split
from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.errors import DataError
from imae_kit.params import float_field, int_field, str_field
from imae_kit.progress import console, is_terminal, progress_callback
from imae_kit.registry import register_dataset


@register_dataset("image_folder")
@attrs.frozen
class ImageFolderData:
    """Your own images from a folder of class sub-folders (torchvision's ImageFolder): grey or RGB, resized to
    size x size, loaded into memory once; label = sub-folder; no factors."""

    path: str = str_field(doc="the folder holding one sub-folder of images per class (relative to the current "
                              "directory)")
    size: int = int_field(64, min=1, doc="side in pixels the images are resized to (size x size)")
    channels: int = int_field(1, min=1, doc="1: converted to grey; 3: kept RGB")
    test_fraction: float = float_field(0.1, min=0.0, max=0.9, doc="share of the images drawn (with seed) for the "
                                       "test set; 0: evaluate on the training images")
    seed: int = int_field(0, min=0, doc="seed of the drawn split")

    @channels.validator
    def _one_or_three(self, attribute, value):
        if value not in (1, 3):
            raise ValueError(f"parameter {attribute.name!r} must be 1 (grey) or 3 (RGB), got {value!r}")

    def load(self) -> DataSplits:
        """Read every image once into a uint8 tensor [N, C, size, size] and split it."""
        from torchvision import datasets, transforms  # torchvision's import costs a second; only when used

        root = Path(self.path).expanduser()
        fix = "fix 'path' in the recipe's [data] table"
        if not root.is_dir():
            what = "not found" if not root.exists() else "is not a folder"
            raise DataError(f"image folder {root} {what}; {fix} (a folder with one sub-folder of images per class)")
        steps = [transforms.Grayscale(1)] if self.channels == 1 else []
        transform = transforms.Compose(steps + [transforms.Resize((self.size, self.size), antialias=True),
                                                transforms.PILToTensor()])
        try:
            folder = datasets.ImageFolder(str(root), transform=transform)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"image folder {root}: {exc}; {fix} (PATH/<class>/<image>.png, one sub-folder per "
                            "class)") from None
        n = len(folder)
        images = torch.empty(n, self.channels, self.size, self.size, dtype=torch.uint8)
        with progress_callback(f"reading {n:,} images from {root}", n, is_terminal(console())) as advance:
            for i, (file, _) in enumerate(folder.samples):
                try:
                    images[i] = folder[i][0]
                except (OSError, ValueError) as exc:
                    raise DataError(f"image folder {root}: {file} cannot be read as an image ({exc}); remove or "
                                    "replace it") from None
                advance(1)
        labels = torch.tensor(folder.targets, dtype=torch.long)
        common = dict(num_classes=len(folder.classes), class_names=tuple(folder.classes))
        index = drawn_split(n, self.test_fraction, self.seed, f"image folder {root}")
        if index is None:
            train = test = TensorImages(images=images, labels=labels, **common)
            split = f"{n:,} images (evaluated on them)"
        else:
            train, test = (TensorImages(images=images[i], labels=labels[i], **common) for i in index)
            split = f"{len(train):,} train + {len(test):,} test (test_fraction {self.test_fraction:g}, seed {self.seed})"
        kind = "grey" if self.channels == 1 else "RGB"
        return DataSplits(train=train, test=test,
                          description=f"image_folder: {root}: {split} {kind} images resized to {self.size}x{self.size}, "
                                      f"uint8 / 255; labels from {len(folder.classes)} sub-folders; no factors")
