"""The packed on-disk cache of the rendered dSprites replica.

The replica is cached at ``<data root>/dsprites/dsprites_replica_v1.bin`` (see
``imae_kit.data.storage`` for the data root): a 4096-byte JSON header (format, grid, sha256 of the
payload) followed by the bit-packed rows (one bit a pixel, 512 bytes an image, 360 MiB for the
full grid), so ``np.memmap(path, np.uint8, "r", offset=4096, shape=(737280, 512))`` reads it. It is
hash-checked on every load and rendered again if damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from imae_kit.data.dsprites_grid import IMAGE_SIZE, ROW_BYTES, FactorGrid
from imae_kit.data.dsprites_render import REPLICA_VERSION, render_grid
from imae_kit.data.storage import atomic_write, data_root, provisioning_lock
from imae_kit.errors import DataError
from imae_kit.progress import console, progress

_MAGIC = b"IMAEKIT-PACKED-BITS\n"
_HEADER_BYTES = 4096


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
    with progress(enabled=not quiet) as bar:
        task = bar.add_task(f"rendering the dSprites replica ({len(grid):,} images)", total=len(grid.orientation))
        packed = render_grid(grid, on_orientation=lambda: bar.advance(task))
    return packed, time.perf_counter() - start
