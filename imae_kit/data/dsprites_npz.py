"""The official dSprites file (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``), streamed into
bit-packed rows and checked against the factor grid."""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from imae_kit.data.dsprites_grid import IMAGE_SIZE, ROW_BYTES, FactorGrid
from imae_kit.errors import DataError
from imae_kit.progress import progress

OFFICIAL_NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream)
    raise ValueError(f"unsupported .npy version {version}")


def read_official_npz(path: str | os.PathLike, grid: FactorGrid | None = None, *,
                      quiet: bool = True) -> np.ndarray:
    """Read the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` into packed rows
    [N, 512], streaming the images (never 3 GB at once) and validating keys, shapes, dtypes,
    pixel values and the factor order. Any problem raises DataError naming the file."""
    grid = FactorGrid.full() if grid is None else grid
    p = Path(path).expanduser()
    fix = "fix 'path' in the recipe's [data] table, or remove it to use the rendered replica"
    if not p.is_file():
        raise DataError(f"dSprites file {p} not found; {fix}")
    if not zipfile.is_zipfile(p):
        raise DataError(f"dSprites file {p} is not an .npz archive (truncated or another format); {fix}")
    n = len(grid)
    try:
        with zipfile.ZipFile(p) as zf:
            members = set(zf.namelist())
            missing = [k for k in ("imgs", "latents_values", "latents_classes") if f"{k}.npy" not in members]
            if missing:
                raise DataError(f"dSprites file {p} lacks the array(s) {', '.join(missing)} "
                                f"(has {', '.join(sorted(m.removesuffix('.npy') for m in members))}); {fix}")
            expected = {"imgs": (n, IMAGE_SIZE, IMAGE_SIZE), "latents_values": (n, 6), "latents_classes": (n, 6)}
            latents = {}
            for key in ("latents_values", "latents_classes"):
                with zf.open(f"{key}.npy") as stream:
                    shape, fortran, dtype = _npy_header(stream)
                    kind_ok = dtype.kind == "f" if key == "latents_values" else dtype.kind in "iu"
                    if shape != expected[key] or not kind_ok or dtype.hasobject:
                        raise DataError(f"dSprites file {p}: {key} is {dtype} {shape}, expected "
                                        f"{'float' if key == 'latents_values' else 'integer'} {expected[key]}; {fix}")
                    raw = stream.read()
                arr = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)))
                latents[key] = arr.reshape(shape, order="F" if fortran else "C")
            want_classes = grid.latents_classes()
            if not np.array_equal(latents["latents_classes"].astype(np.int64), want_classes):
                raise DataError(f"dSprites file {p}: latents_classes are not the official factor grid in the "
                                f"official order; {fix}")
            if not np.allclose(latents["latents_values"], grid.latents_values(), atol=1e-6):
                raise DataError(f"dSprites file {p}: latents_values differ from the official factor values; {fix}")
            del latents, want_classes
            packed = np.empty((n, ROW_BYTES), dtype=np.uint8)
            with zf.open("imgs.npy") as stream:
                shape, fortran, dtype = _npy_header(stream)
                if shape != expected["imgs"] or dtype != np.uint8 or fortran:
                    raise DataError(f"dSprites file {p}: imgs is {dtype} {shape}"
                                    f"{' (Fortran order)' if fortran else ''}, expected uint8 {expected['imgs']} "
                                    f"in C order; {fix}")
                per = IMAGE_SIZE * IMAGE_SIZE
                step = 8192
                with progress(enabled=not quiet) as bar:
                    task = bar.add_task(f"reading {p.name}", total=n)
                    for start in range(0, n, step):
                        count = min(step, n - start)
                        raw = stream.read(count * per)
                        if len(raw) != count * per:
                            raise DataError(f"dSprites file {p}: imgs ends early (truncated); {fix}")
                        chunk = np.frombuffer(raw, dtype=np.uint8).reshape(count, per)
                        if chunk.max(initial=0) > 1:
                            raise DataError(f"dSprites file {p}: imgs has pixel values above 1 (expected 0/1); {fix}")
                        packed[start:start + count] = np.packbits(chunk, axis=1)
                        bar.advance(task, count)
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
        raise DataError(f"dSprites file {p} is damaged or truncated ({type(exc).__name__}: {exc}); {fix}") from exc
    return packed
