"""The IDX format of the MNIST-style files: the codec, reading a folder of IDX files (gz or not), and
the four-file layout torchvision reads (``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Iterable

import attrs
import numpy as np

from imae_kit.data.storage import data_root, sha256_file
from imae_kit.errors import DataError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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
