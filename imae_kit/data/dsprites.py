"""dSprites (Matthey et al. 2017): a replica rendered on first use, or the official npz file.

The official file cannot be downloaded here and its generator was never published, so imae-kit
renders a *replica* of the full factor grid (PAPER.md, "Data sets"): 3 shapes x 6 scales x
40 orientations x 32 x 32 positions = 737,280 binary 64x64 images, in the official order
``((shape*6 + scale)*40 + orientation)*1024 + posX*32 + posY``.

Geometry of the replica (fitted to the 320 frames of the official preview; every length is in
pixels at scale 1 and is multiplied by the scale):

- each pixel is sampled at its centre: column j, row i cover [j, j+1] x [i, i+1], centre (j+.5, i+.5);
- the sprite centre is (16 + 32 posX, 16 + 32 posY): posX the column, posY the row, origin top-left;
- orientation rotates the sprite counter-clockwise on screen;
- square: side 19.2; ellipse: semi-axes 12.76 (along x at orientation 0) and 7.22;
- heart: a square rotated 45 degrees, half-diagonal 7.91, centred 0.419 below the sprite centre,
  plus two discs of radius 5.042 centred at (+-4.626, -4.472) from that square's centre (y down).

Squares and ellipses match almost every official frame pixel for pixel, hearts within a few pixels;
it is still a replica, and every description says so.

Memory: the training set keeps the images bit-packed (one bit a pixel, 512 bytes an image,
377 MB in all) and unpacks each batch (numpy unpackbits); nothing ever holds the 3 GB of
unpacked uint8. The replica is cached at ``<data root>/dsprites/dsprites_replica_v1.bin`` (see
``imae_kit.data.storage`` for the data root): a 4096-byte JSON header (format, grid, sha256 of the
payload) followed by the packed rows, so ``np.memmap(path, np.uint8, "r", offset=4096,
shape=(737280, 512))`` reads it; it is hash-checked on every load and rendered again if damaged.

For the metrics: ``DSpritesImages.latents_classes`` and ``.latents_values`` are numpy arrays
[N, 6] with the official file's columns (color, shape, scale, orientation, posX, posY); color is
always class 0, value 1.0; the shape values are 1, 2, 3 as in the official file. ``factors`` in a
Batch are the last five columns of ``latents_classes``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import attrs
import numpy as np
import torch

from imae_kit.data.base import Batch, DataSplits
from imae_kit.data.storage import (
    atomic_write,
    console,
    data_root,
    progress_bar,
    provisioning_lock,
)
from imae_kit.errors import DataError
from imae_kit.params import bool_field, int_field, optional_str_field
from imae_kit.registry import register_dataset

IMAGE_SIZE = 64
ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8  # 512 bytes a packed image
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
LATENT_NAMES = ("color",) + FACTOR_NAMES  # the official file's columns
SHAPE_NAMES = ("square", "ellipse", "heart")
OFFICIAL_NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

# Geometry at scale 1, in pixels (see the module docstring). Changing any of these changes the
# images: bump REPLICA_VERSION so that old caches are rendered again.
REPLICA_VERSION = 1
SQUARE_HALF_SIDE = 9.6
ELLIPSE_SEMI_AXES = (12.76, 7.22)
HEART_HALF_DIAGONAL = 7.91
HEART_SQUARE_DROP = 0.419
HEART_LOBE_RADIUS = 5.042
HEART_LOBE_OFFSET = (4.626, -4.472)
POSITION_MARGIN = 16.0
POSITION_RANGE = 32.0

_MAGIC = b"IMAEKIT-PACKED-BITS\n"
_HEADER_BYTES = 4096
_F = np.float32


# --------------------------------------------------------------------------- the factor grid


@attrs.frozen
class FactorGrid:
    """The factor values rendered, one tuple per factor; ``shape`` holds shape class ids
    (0 square, 1 ellipse, 2 heart). ``FactorGrid.full()`` is the official grid; tests use small ones.
    Image ``k`` of the grid has classes ``np.unravel_index(k, grid.sizes)`` (C order, posY fastest)."""

    shape: tuple[int, ...] = attrs.field(converter=lambda v: tuple(int(x) for x in v))
    scale: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    orientation: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    pos_x: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    pos_y: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))

    @classmethod
    def full(cls) -> "FactorGrid":
        """The official grid: 3 x linspace(0.5, 1, 6) x linspace(0, 2 pi, 40) x linspace(0, 1, 32)^2."""
        return cls(
            shape=(0, 1, 2),
            scale=tuple(float(v) for v in np.linspace(0.5, 1.0, 6)),
            orientation=tuple(float(v) for v in np.linspace(0.0, 2 * np.pi, 40)),
            pos_x=tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
            pos_y=tuple(float(v) for v in np.linspace(0.0, 1.0, 32)),
        )

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        """Number of values of each factor (shape, scale, orientation, posX, posY)."""
        return (len(self.shape), len(self.scale), len(self.orientation), len(self.pos_x), len(self.pos_y))

    def __len__(self) -> int:
        return int(np.prod(self.sizes))

    def is_full(self) -> bool:
        """True for the official 737,280-image grid."""
        return self == FactorGrid.full()

    def fingerprint(self) -> str:
        """A short stable hash of the grid values (part of the cache's identity)."""
        text = json.dumps(attrs.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def classes_of(self, index: torch.Tensor) -> torch.Tensor:
        """Factor class indices [B, 5] (shape, scale, orientation, posX, posY) of grid images ``index``."""
        classes = np.unravel_index(np.asarray(index.numpy(), dtype=np.int64), self.sizes)
        return torch.from_numpy(np.stack(classes, axis=1).astype(np.int64, copy=False))

    def latents_classes(self, index: np.ndarray | None = None) -> np.ndarray:
        """[N, 6] int64 in the official columns (color, shape, scale, orientation, posX, posY)."""
        idx = np.arange(len(self), dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        out = np.zeros((idx.shape[0], 6), dtype=np.int64)
        out[:, 1:] = np.stack(np.unravel_index(idx, self.sizes), axis=1)
        return out

    def latents_values(self, index: np.ndarray | None = None) -> np.ndarray:
        """[N, 6] float64 in the official columns; color 1.0, shape 1/2/3 as in the official file."""
        classes = self.latents_classes(index)
        out = np.empty(classes.shape, dtype=np.float64)
        out[:, 0] = 1.0
        tables = (np.asarray(self.shape, dtype=np.float64) + 1.0, np.asarray(self.scale),
                  np.asarray(self.orientation), np.asarray(self.pos_x), np.asarray(self.pos_y))
        for k, table in enumerate(tables):
            out[:, k + 1] = table[classes[:, k + 1]]
        return out


# --------------------------------------------------------------------------- the renderer


def _rotation(theta: float) -> tuple[np.float32, np.float32]:
    """(cos, sin) of ``theta`` as float32, with values within 1e-12 of 0 or +-1 snapped (so 0 == 2 pi)."""
    c, s = math.cos(theta), math.sin(theta)
    snapped = []
    for v in (c, s):
        for exact in (-1.0, 0.0, 1.0):
            if abs(v - exact) < 1e-12:
                v = exact
        snapped.append(_F(v))
    return snapped[0], snapped[1]


def _offsets(positions: np.ndarray) -> np.ndarray:
    """Pixel-centre minus sprite-centre coordinates [n, 64] (float32) for positions in [0, 1]."""
    centres = POSITION_MARGIN + POSITION_RANGE * np.asarray(positions, dtype=np.float64)
    pixel_centres = np.arange(IMAGE_SIZE, dtype=np.float64) + 0.5
    return (pixel_centres[None, :] - centres[:, None]).astype(_F)


def _square_gauge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """max(|u|, |v|): a point is in the square of scale s iff this is <= 9.6 s."""
    return np.maximum(np.abs(u), np.abs(v))


def _ellipse_gauge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(u/a)^2 + (v/b)^2: a point is in the ellipse of scale s iff this is <= s^2."""
    a, b = ELLIPSE_SEMI_AXES
    out = u * _F(1.0 / a)
    np.square(out, out=out)
    other = v * _F(1.0 / b)
    np.square(other, out=other)
    out += other
    return out


def _square_limit(scale) -> np.ndarray:
    return (SQUARE_HALF_SIDE * np.asarray(scale, dtype=np.float64)).astype(_F)


def _ellipse_limit(scale) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    return (s * s).astype(_F)


def _heart_mask(abs_u: np.ndarray, v: np.ndarray, scale) -> np.ndarray:
    """Inside the heart of ``scale`` (float32 scalar or broadcastable array), from |u| and v (y down)."""
    s = np.asarray(scale, dtype=np.float64)
    drop = (HEART_SQUARE_DROP * s).astype(_F)
    half_diagonal = (HEART_HALF_DIAGONAL * s).astype(_F)
    lobe_x = (HEART_LOBE_OFFSET[0] * s).astype(_F)
    lobe_y = (HEART_LOBE_OFFSET[1] * s).astype(_F)
    radius_sq = np.square((HEART_LOBE_RADIUS * s).astype(_F))
    v_square = v - drop  # v relative to the rotated square's centre
    work = np.abs(v_square)
    work += abs_u
    inside = work <= half_diagonal  # |u| + |v'| <= d: the square rotated 45 degrees
    # the two lobes are mirror images in u, so one disc test on |u| covers both
    np.subtract(abs_u, lobe_x, out=work)
    np.square(work, out=work)
    v_square -= lobe_y
    np.square(v_square, out=v_square)
    work += v_square
    inside |= work <= radius_sq
    return inside


def _sprite_frame(dx: np.ndarray, dy: np.ndarray, cos: np.float32, sin: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Screen offsets (dx right, dy down) -> sprite coordinates (u, v; v down) undoing a
    counter-clockwise on-screen rotation."""
    u = cos * dx - sin * dy
    v = sin * dx + cos * dy
    return u, v


def render_sprites(shape: Sequence[int], scale: Sequence[float], orientation: Sequence[float],
                   pos_x: Sequence[float], pos_y: Sequence[float]) -> np.ndarray:
    """Render any n sprites (factor *values*, shape as class id 0/1/2) into bool images [n, 64, 64]."""
    shape_a = np.asarray(shape, dtype=np.int64).reshape(-1)
    n = shape_a.shape[0]
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (scale, orientation, pos_x, pos_y)]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("render_sprites: all factor arrays must have the same length")
    scale_a, orient_a, px_a, py_a = arrays
    if np.any((shape_a < 0) | (shape_a > 2)):
        raise ValueError("render_sprites: shape ids are 0 (square), 1 (ellipse), 2 (heart)")
    dx = _offsets(px_a)[:, None, :]  # [n, 1, j]
    dy = _offsets(py_a)[:, :, None]  # [n, i, 1]
    rot = [_rotation(t) for t in orient_a]
    cos = np.array([c for c, _ in rot], dtype=_F)[:, None, None]
    sin = np.array([s for _, s in rot], dtype=_F)[:, None, None]
    u, v = _sprite_frame(dx, dy, cos, sin)
    s3 = scale_a[:, None, None]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for shape_id in range(3):
        sel = shape_a == shape_id
        if not sel.any():
            continue
        if shape_id == 0:
            out[sel] = _square_gauge(u[sel], v[sel]) <= _square_limit(s3[sel])
        elif shape_id == 1:
            out[sel] = _ellipse_gauge(u[sel], v[sel]) <= _ellipse_limit(s3[sel])
        else:
            out[sel] = _heart_mask(np.abs(u[sel]), v[sel], s3[sel])
    return out


def _render_orientation(grid: FactorGrid, o: int, dx_all: np.ndarray, dy_all: np.ndarray) -> np.ndarray:
    """All images of orientation ``o``, packed: [n_shape, n_scale, n_posX * n_posY, 512] uint8."""
    cos, sin = _rotation(grid.orientation[o])
    dx = dx_all[:, None, None, :]  # [posX, 1, 1, j]
    dy = dy_all[None, :, :, None]  # [1, posY, i, 1]
    u, v = _sprite_frame(dx, dy, cos, sin)  # [posX, posY, 64, 64]
    n_pos = dx_all.shape[0] * dy_all.shape[0]
    out = np.empty((len(grid.shape), len(grid.scale), n_pos, ROW_BYTES), dtype=np.uint8)

    def pack(mask: np.ndarray) -> np.ndarray:
        return np.packbits(mask, axis=-1).reshape(n_pos, ROW_BYTES)

    # the square and ellipse tests are a gauge function thresholded at a scale-dependent level:
    # compute the gauge once per orientation, then one comparison per scale
    gauges: dict[int, np.ndarray] = {}
    abs_u = None
    for a, shape_id in enumerate(grid.shape):
        for b, s in enumerate(grid.scale):
            if shape_id == 0:
                if 0 not in gauges:
                    gauges[0] = _square_gauge(u, v)
                out[a, b] = pack(gauges[0] <= _square_limit(s))
            elif shape_id == 1:
                if 1 not in gauges:
                    gauges[1] = _ellipse_gauge(u, v)
                out[a, b] = pack(gauges[1] <= _ellipse_limit(s))
            else:
                if abs_u is None:
                    abs_u = np.abs(u)
                out[a, b] = pack(_heart_mask(abs_u, v, s))
    return out


def render_grid(grid: FactorGrid | None = None, *, threads: int | None = None,
                on_orientation: Callable[[], None] | None = None) -> np.ndarray:
    """Render every image of ``grid`` (default: the full official grid), bit-packed: uint8
    [len(grid), 512], rows in the official order. Orientations run in parallel threads."""
    grid = FactorGrid.full() if grid is None else grid
    n_sh, n_sc, n_or, n_px, n_py = grid.sizes
    out = np.empty((n_sh, n_sc, n_or, n_px * n_py, ROW_BYTES), dtype=np.uint8)
    dx_all = _offsets(np.asarray(grid.pos_x))
    dy_all = _offsets(np.asarray(grid.pos_y))
    if threads is None:
        threads = max(1, min(len(os.sched_getaffinity(0)), 8))

    def job(o: int) -> int:
        out[:, :, o] = _render_orientation(grid, o, dx_all, dy_all)
        return o

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(job, range(n_or)):
            if on_orientation is not None:
                on_orientation()
    return out.reshape(len(grid), ROW_BYTES)


# --------------------------------------------------------------------------- the data set


class DSpritesImages:
    """dSprites images kept bit-packed ([N, 512] uint8), unpacked per batch (ArrayDataset).

    The unpacking runs in numpy, on one thread: for batches this small torch's intra-op threads cost
    more than they save, and collapse when another process competes for the two cores
    (benchmarks/data_speed.py measured both).

    ``indices`` selects a subset of the grid (an evaluation subset); ``None`` means all of it.
    ``latents_classes`` / ``latents_values``: [len, 6] numpy arrays, official columns (color, shape,
    scale, orientation, posX, posY) for this set's rows; ``grid_indices``: those rows' grid indices.
    """

    factor_names = FACTOR_NAMES

    def __init__(self, packed: torch.Tensor, grid: FactorGrid, indices: torch.Tensor | None = None) -> None:
        if packed.dtype != torch.uint8 or packed.dim() != 2 or packed.shape[1] != ROW_BYTES:
            raise ValueError(f"packed images must be uint8 [N, {ROW_BYTES}], got {packed.dtype} {tuple(packed.shape)}")
        if packed.shape[0] != len(grid):
            raise ValueError(f"{packed.shape[0]} packed images for a grid of {len(grid)}")
        self.packed = packed
        self._packed_np = packed.numpy()
        self.grid = grid
        self.indices = None if indices is None else indices.to(torch.long)
        self.image_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
        self.num_classes = len(grid.shape)
        self.factor_sizes = grid.sizes

    def __len__(self) -> int:
        return int(self.packed.shape[0] if self.indices is None else self.indices.shape[0])

    def subset(self, indices: torch.Tensor) -> "DSpritesImages":
        """The rows ``indices`` of this set, sharing its packed images."""
        rows = indices.to(torch.long) if self.indices is None else self.indices[indices]
        return DSpritesImages(self.packed, self.grid, rows)

    def get_batch(self, index: torch.Tensor) -> Batch:
        """Pixels [B, 4096] float32 in {0, 1}; labels = shape class; factors [B, 5] class indices."""
        rows = index.to(torch.long) if self.indices is None else self.indices[index]
        bits = np.unpackbits(self._packed_np[rows.numpy()], axis=1)  # [B, 4096] uint8, MSB first
        x = torch.from_numpy(bits.astype(np.float32))
        factors = self.grid.classes_of(rows)
        return Batch(x=x, labels=factors[:, 0].clone(), factors=factors)

    @property
    def grid_indices(self) -> np.ndarray:
        """Grid index of each row of this set, int64 [len]."""
        if self.indices is None:
            return np.arange(len(self), dtype=np.int64)
        return self.indices.numpy()

    @functools.cached_property
    def latents_classes(self) -> np.ndarray:
        """[len, 6] int64, official columns (color, shape, scale, orientation, posX, posY)."""
        return self.grid.latents_classes(self.grid_indices)

    @functools.cached_property
    def latents_values(self) -> np.ndarray:
        """[len, 6] float64, official columns; shape values 1, 2, 3; color 1."""
        return self.grid.latents_values(self.grid_indices)


# --------------------------------------------------------------------------- the replica cache


class _Damaged(Exception):
    """The cache file exists but cannot be trusted (reason in the message)."""


def replica_path(root: str | os.PathLike | None = None, grid: FactorGrid | None = None) -> Path:
    """Where the rendered replica lives: ``<data root>/dsprites/dsprites_replica_v1.bin``."""
    grid = FactorGrid.full() if grid is None else grid
    tag = "" if grid.is_full() else f"_grid-{grid.fingerprint()}"
    return data_root(root) / "dsprites" / f"dsprites_replica_v{REPLICA_VERSION}{tag}.bin"


def _header(grid: FactorGrid, digest: str, seconds: float) -> bytes:
    meta = {
        "format": 1,
        "content": "dSprites replica rendered by imae-kit (not the official file)",
        "replica_version": REPLICA_VERSION,
        "grid": grid.fingerprint(),
        "count": len(grid),
        "row_bytes": ROW_BYTES,
        "image_shape": [IMAGE_SIZE, IMAGE_SIZE],
        "bitorder": "big",
        "order": "((shape*S + scale)*O + orientation)*PX*PY + posX*PY + posY",
        "payload_offset": _HEADER_BYTES,
        "sha256": digest,
        "render_seconds": round(seconds, 2),
    }
    text = _MAGIC + json.dumps(meta, sort_keys=True).encode()
    if len(text) > _HEADER_BYTES - 1:
        raise AssertionError("replica header too long")
    return text + b" " * (_HEADER_BYTES - 1 - len(text)) + b"\n"


def write_replica(path: Path, packed: np.ndarray, grid: FactorGrid, seconds: float = 0.0) -> str:
    """Write packed rows with their header atomically; return the payload's sha256."""
    payload = memoryview(np.ascontiguousarray(packed)).cast("B")
    digest = hashlib.sha256(payload).hexdigest()
    with atomic_write(path) as f:
        f.write(_header(grid, digest, seconds))
        step = 1 << 24
        for start in range(0, len(payload), step):
            f.write(payload[start:start + step])
    return digest


def read_replica(path: Path, grid: FactorGrid) -> tuple[np.ndarray, dict]:
    """Read and hash-check a cached replica; raises _Damaged with the reason if it cannot be trusted."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
            if len(head) < _HEADER_BYTES or not head.startswith(_MAGIC):
                raise _Damaged("no valid header")
            try:
                meta = json.loads(head[len(_MAGIC):].decode().strip())
            except ValueError as exc:
                raise _Damaged(f"unreadable header ({exc})") from exc
            expected = {"format": 1, "replica_version": REPLICA_VERSION, "grid": grid.fingerprint(),
                        "count": len(grid), "row_bytes": ROW_BYTES}
            for key, value in expected.items():
                if meta.get(key) != value:
                    raise _Damaged(f"header field {key!r} is {meta.get(key)!r}, expected {value!r}")
            size = os.fstat(f.fileno()).st_size
            if size != _HEADER_BYTES + len(grid) * ROW_BYTES:
                raise _Damaged(f"size {size} bytes, expected {_HEADER_BYTES + len(grid) * ROW_BYTES} (truncated?)")
            packed = np.empty((len(grid), ROW_BYTES), dtype=np.uint8)
            view = memoryview(packed).cast("B")
            h = hashlib.sha256()
            step = 1 << 24
            for start in range(0, len(view), step):
                chunk = view[start:start + step]
                if f.readinto(chunk) != len(chunk):
                    raise _Damaged("payload shorter than the header says")
                h.update(chunk)
    except OSError as exc:
        raise _Damaged(f"unreadable ({exc.strerror or exc})") from exc
    if h.hexdigest() != meta.get("sha256"):
        raise _Damaged("sha256 of the images does not match the header")
    return packed, meta


def replica_info(root: str | os.PathLike | None = None, *, verify: bool = True) -> dict:
    """Whether the replica is cached, where, how big, and (if ``verify``) whether its hash checks."""
    path = replica_path(root)
    info = {"path": path, "present": path.is_file(), "size": path.stat().st_size if path.is_file() else 0,
            "verified": None}
    if info["present"] and verify:
        try:
            read_replica(path, FactorGrid.full())
            info["verified"] = True
        except _Damaged as exc:
            info["verified"] = False
            info["problem"] = str(exc)
    return info


def ensure_replica(root: str | os.PathLike | None = None, *, grid: FactorGrid | None = None,
                   render: bool = True, force: bool = False, quiet: bool = False) -> tuple[np.ndarray, Path]:
    """The packed replica [N, 512] from the cache, rendered (and cached) first if missing or damaged.

    With ``render=False`` a missing or damaged cache raises DataError naming the command to run.
    """
    grid = FactorGrid.full() if grid is None else grid
    path = replica_path(root, grid)
    if not force and path.is_file():
        try:
            packed, _ = read_replica(path, grid)
            return packed, path
        except _Damaged as exc:
            problem = f"the cached dSprites replica {path} is damaged ({exc})"
            if not render:
                raise DataError(f"{problem}; run `imae-kit data fetch dsprites` to render it again") from exc
            if not quiet:
                console().print(f"[yellow]{problem}; rendering it again[/]")
    elif not force and not render:
        raise DataError(
            f"the dSprites replica is not in the data cache ({path}); run `imae-kit data fetch dsprites` "
            "to render it (about 10 s), or set auto_fetch = true, or give the official npz as 'path'"
        )
    with provisioning_lock(path.parent):
        if not force and path.is_file():  # another process may have rendered it while we waited
            try:
                packed, _ = read_replica(path, grid)
                return packed, path
            except _Damaged:
                pass
        packed, seconds = _render_with_progress(grid, quiet=quiet)
        start = time.perf_counter()
        write_replica(path, packed, grid, seconds=seconds)
        if not quiet:
            console().print(
                f"dSprites replica: {len(grid):,} images rendered in {seconds:.1f} s, "
                f"written to {path} in {time.perf_counter() - start:.1f} s"
            )
    return packed, path


def _render_with_progress(grid: FactorGrid, *, quiet: bool) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    with progress_bar(quiet=quiet) as bar:
        task = bar.add_task(f"rendering the dSprites replica ({len(grid):,} images)", total=len(grid.orientation))
        packed = render_grid(grid, on_orientation=lambda: bar.advance(task))
    return packed, time.perf_counter() - start


# --------------------------------------------------------------------------- the official npz


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
                with progress_bar(quiet=quiet) as bar:
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


# --------------------------------------------------------------------------- the registered data set


@register_dataset("dsprites")
@attrs.frozen
class DSprites:
    """dSprites: 737,280 binary 64x64 images; label = shape (3 classes); factors = (shape, scale,
    orientation, posX, posY) class indices. By default a replica rendered by imae-kit on first use
    and cached; ``path`` gives the official npz instead. Training uses every image; evaluation uses
    all of them (``eval_size = 0``, as Chen et al. 2018 compute MIG) or a fixed random subset."""

    root: str | None = optional_str_field(
        None, doc="data root holding dsprites/, relative to the current directory (default: $IMAE_KIT_DATA, "
                  "else $XDG_CACHE_HOME/imae-kit, else ~/.cache/imae-kit)")
    path: str | None = optional_str_field(
        None, doc=f"the official {OFFICIAL_NPZ_NAME}, used instead of the replica (read and packed at each "
                  "load, about 10 s)")
    eval_size: int = int_field(0, min=0, doc="images in the evaluation set: 0 = all 737,280, else a fixed random subset")
    eval_seed: int = int_field(0, min=0, doc="seed of the evaluation subset (independent of the run's seed)")
    auto_fetch: bool = bool_field(True, doc="render the replica into the cache if missing or damaged "
                                            "(false: fail and name `imae-kit data fetch dsprites`)")

    def load(self) -> DataSplits:
        """Load (rendering on first use) and split: train = all images, test = all or a fixed subset."""
        grid = FactorGrid.full()
        if self.path is not None:
            packed = read_official_npz(self.path, grid, quiet=False)
            what = f"dsprites: the official file {Path(self.path).expanduser()}"
        else:
            packed, where = ensure_replica(self.root, grid=grid, render=self.auto_fetch)
            what = f"dsprites: a replica rendered by imae-kit (not the official file), cached at {where}"
        train = DSpritesImages(torch.from_numpy(packed), grid)
        if self.eval_size == 0 or self.eval_size >= len(grid):
            test, which = train, "evaluation on all images"
        else:
            g = torch.Generator().manual_seed(self.eval_seed)
            rows = torch.randperm(len(grid), generator=g)[: self.eval_size].sort().values
            test = train.subset(rows)
            which = f"evaluation on a fixed random subset of {self.eval_size:,} (seed {self.eval_seed})"
        return DataSplits(train=train, test=test,
                          description=f"{what}; {len(grid):,} 64x64 binary images; {which}")
