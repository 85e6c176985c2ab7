"""The dSprites replica's renderer: the sprites' geometry, rasterised at the pixel centres.

The official generator was never published, so imae-kit renders a *replica* (PAPER.md, "Data sets").
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
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from imae_kit.data.dsprites_grid import IMAGE_SIZE, ROW_BYTES, FactorGrid

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

_F = np.float32


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
