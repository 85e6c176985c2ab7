"""Keep freed memory in the process: large CPU tensors then reuse pages instead of faulting in new ones.

PyTorch has no caching allocator on the CPU: every tensor is a malloc and every free a free. glibc serves a
block of 128 KiB or more (a [512, 4096] float32 batch is 8 MiB) by ``mmap`` and returns it to the system at
``free``, so the next step's tensor of the same size starts as fresh pages that the kernel must fault in and
zero, one 4 KiB page at a time. On this project's 2-core machine that was about 9,900 page faults and 70 ms
of a 250 ms dSprites training step (bf16, batch 512; the ``levers`` line of ``benchmarks/throughput.py``
times the step both ways).

``keep_freed_memory`` raises glibc's mmap threshold and trim threshold (``mallopt``), so such blocks come
from the heap and stay there after ``free``: the next step reuses the same, already mapped pages. The
price is that the process keeps its peak memory until it exits (a training run does anyway). It changes no
number a run computes. ``IMAE_KIT_MALLOC=system`` leaves glibc's defaults alone; on other C libraries or
systems it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_KEEP_BELOW = 1 << 30  # blocks up to 1 GiB come from the heap (a whole dSprites grid batch is far less)
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks below 1 GiB from the heap and never trim it; idempotent. True where it took
    effect (Linux with glibc, ``IMAE_KIT_MALLOC`` not ``system``)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("IMAE_KIT_MALLOC", "").strip().lower() == "system" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # a fixed threshold also stops glibc's own adjustment of it; both calls return 1 on success
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
