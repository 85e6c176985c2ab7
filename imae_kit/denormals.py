"""Flush subnormal floats to zero on the CPU (FTZ/DAZ), in every intra-op thread: training stays at full speed.

A trained dSprites model slows its step by half in a process that keeps subnormals (floats below 1.2e-38):
Adam's second moments of pixels that are always off decay into that range, and the fused Adam kernel took
55 ms a step instead of 9 (bf16, batch 512, the 2-core AMX machine; README "Precision and speed"). x86 CPUs
handle such numbers in microcode; with FTZ/DAZ set they are read and written as zero instead. No quantity
a run reports lives there: every density is computed in log space, and a second moment of 1e-39 and one of 0
give the same Adam step (its eps is 1e-8).

The flag is per thread, and a thread inherits it from the thread that creates it. PyTorch's intra-op (OpenMP)
threads are created by the first parallel operation, so ``flush_denormals`` must run before it: the
``imae-kit`` command (``imae_kit.cli.main``, also ``python -m imae_kit`` and torchrun's processes) calls it
first thing. The flag is process state that Python's own floats obey too, so importing imae_kit does not set
it: in your own process (a notebook, a script calling ``imae_kit.train``) call
``imae_kit.denormals.flush_denormals()`` before any torch work if you want the CLI's speed. A process whose
torch threads existed before the call keeps subnormals in them; ``denormal_mode`` tells ("partial"), the
trainer warns, and run.json records the mode of every run. ``IMAE_KIT_DENORMALS=keep`` makes
``flush_denormals`` a no-op.
"""

from __future__ import annotations

import os

import torch

_requested: bool | None = None


def flush_denormals() -> bool:
    """Set FTZ/DAZ on this thread (and so on the threads it creates from now on); idempotent. True where it took
    effect (an x86 CPU with SSE3, ``IMAE_KIT_DENORMALS`` not ``keep``)."""
    global _requested
    if _requested is None:
        keep = os.environ.get("IMAE_KIT_DENORMALS", "").strip().lower() == "keep"
        _requested = False if keep else bool(torch.set_flush_denormal(True))
    return _requested


def denormal_mode() -> str:
    """'flushed' (every intra-op thread flushes subnormals), 'partial' (some do not: their pool existed before
    ``flush_denormals``) or 'kept' (none does, by request or for want of hardware support). A probe: one
    multiplication of a subnormal over enough elements that every intra-op thread takes a share."""
    threads = torch.get_num_threads()
    # the subnormal 5.9e-39 made from its bits (a float literal would itself be flushed on this thread), and
    # the product's bits counted as integers (a float comparison would read a subnormal as zero under DAZ)
    bits = torch.full(((1 << 16) * max(1, threads),), 0x00400000, dtype=torch.int32)
    kept = int(torch.count_nonzero((bits.view(torch.float32) * 1.0).view(torch.int32)))
    if kept == 0:
        return "flushed"
    return "kept" if kept == bits.numel() else "partial"
