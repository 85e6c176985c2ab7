"""Your own data as arrays: an ``.npz`` file, a folder of ``.npy`` files, or one ``.npy`` of images.

Keys (the ``.npz`` member names, or the ``.npy`` file names without the suffix):

- the images, either all in ``images`` [N, H, W] or [N, C, H, W] (C = 1 or 3), split by the file's
  ``split`` [N] (True / 1 / "test" for a test image, False / 0 / "train" for a training one) or, without
  one, by drawing a ``test_fraction`` of them with ``seed``; or already split, ``train_images`` and
  ``test_images`` (same C, H, W);
- optional ``labels`` [N] (or ``train_labels`` / ``test_labels``): integer classes >= 0, giving the
  accuracy of y; optional ``class_names`` [K] (strings) names them;
- optional ``factors`` [N, F] (or [N] for one factor; ``train_factors`` / ``test_factors``): integer classes
  >= 0 of the ground-truth factors, giving the MIG and the other factor metrics; optional ``factor_names``
  [F] (strings; default v0, v1, ...). A factor with one value in the whole file is left out (its entropy is
  0, so no MIG can be taken of it), as dSprites' colour is.

Pixels end in [0, 1], which the Bernoulli decoder wants: uint8 is divided by 255 (per batch, stored as one
byte a pixel), bool is 0/1, a float array must already lie in [0, 1] (checked, not clipped: values more
than 1e-6 outside are an error; those within are clipped) and is stored as float32. Other integer types are
refused (is 1 white or nearly black?): convert them to uint8 or to floats in [0, 1].

Every problem (a missing path, an unknown key, a wrong shape or type, lengths that differ, pixels out of
range) is a DataError naming the file, the key and the fix. Arrays are read with ``allow_pickle=False``:
names are stored as numpy string arrays (``np.array(names, dtype=str)``), never as Python objects.
"""

from __future__ import annotations

import difflib
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.errors import DataError
from imae_kit.params import float_field, int_field, str_field
from imae_kit.registry import register_dataset

SPLITS = ("train", "test")
PER_SPLIT = ("images", "labels", "factors")
KEYS = (PER_SPLIT + ("split",) + tuple(f"{s}_{k}" for s in SPLITS for k in PER_SPLIT)
        + ("factor_names", "class_names"))
FLOAT_TOLERANCE = 1e-6


def _fail(source: str, message: str) -> DataError:
    return DataError(f"arrays {source}: {message}")


def read_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """The named arrays of an ``.npz`` file, a folder of ``.npy`` files or one ``.npy`` (its array is
    ``images``), and the path as the messages name it. DataError if it is missing or unreadable."""
    p = Path(path).expanduser()
    source = str(p)
    fix = "fix 'path' in the recipe's [data] table"
    if not p.exists():
        raise DataError(f"arrays file {source} not found; {fix} (an .npz file or a folder of .npy files)")
    files: dict[str, Path]
    try:
        if p.is_dir():
            files = {f.stem: f for f in sorted(p.glob("*.npy"))}
            if not files:
                raise _fail(source, f"the folder holds no .npy files; {fix}")
            return {k: np.load(f, allow_pickle=False) for k, f in files.items()}, source
        if zipfile.is_zipfile(p):
            with np.load(p, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}, source
        if p.suffix == ".npy":
            return {"images": np.load(p, allow_pickle=False)}, source
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _fail(source, "holds an array of Python objects, which is not read (allow_pickle=False); save "
                                "names as string arrays (np.array(names, dtype=str)) and numbers as numeric "
                                "arrays") from None
        raise _fail(source, f"cannot be read ({exc}); write it again with np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(source, f"cannot be read ({type(exc).__name__}: {exc}); write it again with np.savez") from None
    raise _fail(source, "is neither an .npz archive, a .npy file nor a folder of .npy files; save the arrays "
                        "with np.savez(path, images=..., labels=...)")


def _check_keys(arrays: dict[str, np.ndarray], source: str) -> None:
    for key in arrays:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise _fail(source, f"unknown array {key!r}; {hint}valid names: {', '.join(KEYS)}")
    whole, split = "images" in arrays, [f"{s}_images" in arrays for s in SPLITS]
    if whole and any(split):
        raise _fail(source, "holds both 'images' and train_images/test_images; keep one of the two layouts")
    if not whole and not all(split):
        if any(split):
            have, lack = ("train", "test") if split[0] else ("test", "train")
            raise _fail(source, f"has {have}_images but no {lack}_images; add it, or store every image in "
                                "'images' and let test_fraction (or a 'split' array) divide them")
        raise _fail(source, f"has no images (arrays: {', '.join(sorted(arrays)) or 'none'}); store them as "
                            "'images' [N, H, W] or [N, C, H, W], or as train_images and test_images")
    for key in arrays:
        prefix, _, base = key.partition("_")
        if whole and prefix in SPLITS and base in PER_SPLIT:
            raise _fail(source, f"array {key!r} goes with train_images/test_images, but the images are all in "
                                f"'images'; name it {base!r} (and split them with a 'split' array or test_fraction)")
        if not whole and key in PER_SPLIT + ("split",):
            fix = "drop it (train_images and test_images are the split)" if key == "split" else \
                f"give train_{key} and test_{key}"
            raise _fail(source, f"array {key!r} goes with 'images', but the images are in train_images/"
                                f"test_images; {fix}")


def _images(a: np.ndarray, key: str, source: str) -> torch.Tensor:
    """[N, H, W] or [N, C, H, W] pixels as a tensor whose batches end in [0, 1] (see the module docstring)."""
    if a.ndim not in (3, 4) or a.shape[0] == 0:
        raise _fail(source, f"{key} has shape {a.shape}; expected [N, H, W] or [N, C, H, W] with N >= 1")
    if a.ndim == 4 and a.shape[1] not in (1, 3):
        if a.shape[3] in (1, 3):
            raise _fail(source, f"{key} has shape {a.shape}, channels last; store [N, C, H, W] "
                                f"(np.moveaxis({key}, -1, 1))")
        raise _fail(source, f"{key} has shape {a.shape}: {a.shape[1]} channels; expected 1 (grey) or 3 (RGB)")
    if a.dtype == np.uint8 or a.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(a))
    if a.dtype.kind != "f":
        raise _fail(source, f"{key} is {a.dtype}; pixels must be uint8 (0..255, divided by 255), bool, or floats "
                            "in [0, 1]; convert it (e.g. .astype(np.uint8) for 0..255 grey levels)")
    x = a.astype(np.float32)
    if not np.isfinite(x).all():
        raise _fail(source, f"{key} holds NaN or infinite pixel values; pixels must be floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < -FLOAT_TOLERANCE or hi > 1 + FLOAT_TOLERANCE:
        hint = "; divide by 255 (or store uint8)" if hi <= 255 and lo >= 0 else ""
        raise _fail(source, f"{key} has pixel values in [{lo:g}, {hi:g}]; float pixels must lie in [0, 1] "
                            f"(the Bernoulli decoder's targets){hint}")
    return torch.from_numpy(np.clip(x, 0.0, 1.0))


def _classes(a: np.ndarray, key: str, n: int, source: str, *, columns: bool) -> torch.Tensor:
    """Integer classes >= 0: [n] (labels) or [n, F] (factors, a 1-D array is one factor) as int64."""
    if columns and a.ndim == 1:
        a = a[:, None]
    want = "[N, F]" if columns else "[N]"
    if a.ndim != (2 if columns else 1):
        raise _fail(source, f"{key} has shape {a.shape}; expected {want}")
    if a.shape[0] != n:
        raise _fail(source, f"{key} has {a.shape[0]} rows but the images are {n}; give one row per image")
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        what = "factor classes" if columns else "labels"
        hint = (" (map values to classes with np.unique(values, return_inverse=True)[1])" if columns else "")
        raise _fail(source, f"{key} is {a.dtype}; {what} must be integers >= 0{hint}")
    if a.size and int(a.min()) < 0:
        raise _fail(source, f"{key} holds negative values ({int(a.min())}); classes must be integers >= 0")
    return torch.from_numpy(a.astype(np.int64))


def _names(a: np.ndarray, key: str, source: str) -> tuple[str, ...]:
    if a.ndim != 1 or a.dtype.kind not in "US":
        raise _fail(source, f"{key} must be a 1-D array of strings (np.array(names, dtype=str)), got {a.dtype} "
                            f"{a.shape}")
    return tuple(str(v.decode() if isinstance(v, bytes) else v) for v in a.tolist())


def _split_mask(a: np.ndarray, n: int, source: str) -> np.ndarray:
    """The 'split' array as a bool mask [n], True for a test image."""
    if a.ndim != 1 or a.shape[0] != n:
        raise _fail(source, f"split has shape {a.shape}; expected [N] = [{n}], one entry per image")
    if a.dtype.kind in "US":
        values = np.char.lower(a.astype(str))
        bad = sorted(set(values.tolist()) - set(SPLITS))
        if bad:
            raise _fail(source, f"split holds {bad[0]!r}; use 'train' and 'test' (or False/True, 0/1)")
        mask = values == "test"
    elif a.dtype.kind in "biu":
        bad = sorted(set(np.unique(a).tolist()) - {0, 1})
        if bad:
            raise _fail(source, f"split holds {bad[0]!r}; use 0 (train) and 1 (test), or False/True")
        mask = a.astype(bool)
    else:
        raise _fail(source, f"split is {a.dtype}; use bool, 0/1 or 'train'/'test'")
    if mask.all() or not mask.any():
        raise _fail(source, f"split puts every image in the {'test' if mask.all() else 'training'} set; both "
                            "need at least one")
    return mask


def drawn_split(n: int, test_fraction: float, seed: int, source: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(train, test) indices, sorted: round(n * test_fraction) test images (at least one) drawn with ``seed``;
    None for test_fraction = 0 (evaluate on the training images)."""
    if test_fraction == 0:
        return None
    if n < 2:
        raise DataError(f"{source}: {n} image(s) cannot be split into a training and a test set; add images "
                        "or set test_fraction = 0 (evaluate on the training images)")
    count = min(max(1, round(n * test_fraction)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


@attrs.frozen(eq=False)
class _Part:
    images: torch.Tensor
    labels: torch.Tensor | None
    factors: torch.Tensor | None


def arrays_splits(arrays: dict[str, np.ndarray], source: str, *, test_fraction: float, seed: int
                  ) -> tuple[DataSplits, dict[str, Any]]:
    """Validate the named arrays and build the two splits; also what the description needs."""
    _check_keys(arrays, source)
    info: dict[str, Any] = {}
    if "images" in arrays:
        images = _images(arrays["images"], "images", source)
        n = len(images)
        labels = _classes(arrays["labels"], "labels", n, source, columns=False) if "labels" in arrays else None
        factors = _classes(arrays["factors"], "factors", n, source, columns=True) if "factors" in arrays else None
        whole = _Part(images, labels, factors)
        if "split" in arrays:
            mask = torch.from_numpy(_split_mask(arrays["split"], n, source))
            index = (torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten())
            info["split"] = "the file's split"
        else:
            index = drawn_split(n, test_fraction, seed, f"arrays {source}")
            info["split"] = ("evaluated on the training images (test_fraction = 0)" if index is None else
                             f"test_fraction {test_fraction:g} drawn with seed {seed}")
        if index is None:
            parts = [whole, whole]
        else:
            parts = [_Part(images[i], None if labels is None else labels[i], None if factors is None else factors[i])
                     for i in index]
    else:
        parts = []
        for s in SPLITS:
            images = _images(arrays[f"{s}_images"], f"{s}_images", source)
            n = len(images)
            lk, fk = f"{s}_labels", f"{s}_factors"
            parts.append(_Part(images,
                               _classes(arrays[lk], lk, n, source, columns=False) if lk in arrays else None,
                               _classes(arrays[fk], fk, n, source, columns=True) if fk in arrays else None))
        info["split"] = "the file's train/test arrays"
        train, test = parts
        if train.images.shape[1:] != test.images.shape[1:]:
            raise _fail(source, f"train_images are {tuple(train.images.shape[1:])} but test_images "
                                f"{tuple(test.images.shape[1:])}; both splits need the same image shape")
        for what in ("labels", "factors"):
            have = [getattr(p, what) is not None for p in parts]
            if have[0] != have[1]:
                raise _fail(source, f"has {'train' if have[0] else 'test'}_{what} but no "
                                    f"{'test' if have[0] else 'train'}_{what}; give both or neither")
        if train.factors is not None and train.factors.shape[1] != test.factors.shape[1]:
            raise _fail(source, f"train_factors have {train.factors.shape[1]} columns but test_factors "
                                f"{test.factors.shape[1]}; both need the same factors")
    return _finish(parts, arrays, source, info), info


def _finish(parts: list[_Part], arrays: dict[str, np.ndarray], source: str, info: dict[str, Any]) -> DataSplits:
    train, test = parts
    common: dict[str, Any] = {}
    if train.labels is not None:
        top = max(int(p.labels.max()) for p in parts if len(p.labels)) + 1
        names = _names(arrays["class_names"], "class_names", source) if "class_names" in arrays else ()
        if names and len(names) < top:
            raise _fail(source, f"class_names has {len(names)} names but the labels go up to {top - 1}; give one "
                                "name per class")
        common.update(num_classes=len(names) if names else top, class_names=names)
        info["labels"] = common["num_classes"]
    elif "class_names" in arrays:
        raise _fail(source, "has class_names but no labels; add the labels or drop class_names")
    if train.factors is not None:
        f = train.factors.shape[1]
        names = (_names(arrays["factor_names"], "factor_names", source) if "factor_names" in arrays
                 else tuple(f"v{j}" for j in range(f)))
        if len(names) != f:
            raise _fail(source, f"factor_names has {len(names)} names for {f} factor columns; give one per column")
        if len(set(names)) != len(names):
            raise _fail(source, f"factor_names repeats a name ({', '.join(names)}); give each factor its own")
        both = torch.cat([train.factors, test.factors]) if test is not train else train.factors
        varying = [j for j in range(f) if int(both[:, j].max()) != int(both[:, j].min())]
        info["constant_factors"] = [names[j] for j in range(f) if j not in varying]
        if varying:
            sizes = tuple(int(both[:, j].max()) + 1 for j in varying)
            keep = torch.tensor(varying)
            common.update(factor_names=tuple(names[j] for j in varying), factor_sizes=sizes)
            parts = [_Part(p.images, p.labels, p.factors[:, keep]) for p in parts] if test is not train else \
                [_Part(train.images, train.labels, train.factors[:, keep])] * 2
            info["factors"] = common["factor_names"]
        else:
            parts = [_Part(p.images, p.labels, None) for p in parts]
    elif "factor_names" in arrays:
        raise _fail(source, "has factor_names but no factors; add the factors or drop factor_names")
    built = [TensorImages(images=p.images, labels=p.labels, factors=p.factors, **common) for p in parts]
    if test is train:
        built = [built[0], built[0]]
    return DataSplits(train=built[0], test=built[1], description="")


def describe(name: str, source: str, splits: DataSplits, info: dict[str, Any], pixels: str) -> str:
    """One line: where the images come from, how many, their shape, split, labels and factors."""
    c, h, w = splits.train.image_shape
    same = splits.test is splits.train
    sizes = f"{len(splits.train):,} images (evaluated on them)" if same else \
        f"{len(splits.train):,} train + {len(splits.test):,} test"
    parts = [f"{name}: {source}: {sizes} {c}x{h}x{w} images, {pixels}", info["split"]]
    parts.append(f"labels ({info['labels']} classes)" if "labels" in info else "no labels")
    if info.get("factors"):
        parts.append(f"factors {', '.join(info['factors'])}")
    if info.get("constant_factors"):
        parts.append(f"constant factor(s) left out: {', '.join(info['constant_factors'])}")
    return "; ".join(parts)


_TEST_FRACTION_DOC = ("share of the images drawn (with seed) for the test set when the file holds no split; 0: "
                      "evaluate on the training images")


@register_dataset("arrays")
@attrs.frozen
class Arrays:
    """Your own images from an .npz file or a folder of .npy files (keys: images or train_images/test_images,
    labels, factors, factor_names, class_names, split; see imae_kit/data/arrays.py); labels give the accuracy,
    factors the MIG and the other factor metrics."""

    path: str = str_field(doc="the .npz file, a folder of .npy files, or one .npy of images (relative to the "
                              "current directory)")
    test_fraction: float = float_field(0.1, min=0.0, max=0.9, doc=_TEST_FRACTION_DOC)
    seed: int = int_field(0, min=0, doc="seed of the drawn split")

    def load(self) -> DataSplits:
        """Read and check the arrays, then split them (the file's split, else test_fraction)."""
        arrays, source = read_arrays(self.path)
        splits, info = arrays_splits(arrays, source, test_fraction=self.test_fraction, seed=self.seed)
        kinds = {str(a.dtype) for k, a in arrays.items() if k.endswith("images")}
        pixels = " and ".join(sorted(kinds)) + " pixels in [0, 1]" + (" (uint8 / 255)" if "uint8" in kinds else "")
        return attrs.evolve(splits, description=describe("arrays", source, splits, info, pixels))
