"""The classic ``mnist.pkl.gz``, read with a restricted unpickler (numpy arrays only) and turned back
into the four official uint8 MNIST arrays."""

from __future__ import annotations

import codecs
import gzip
import importlib
import pickle
import zlib

import numpy as np

from imae_kit.errors import DataError


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
