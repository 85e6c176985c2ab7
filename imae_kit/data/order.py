"""The data order of a run: a function of (seed, epoch) only, so any process (and any resume) can recompute it."""

from __future__ import annotations

from typing import Iterator

import torch


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of ``epoch``: a permutation of ``n`` that depends only on (seed, epoch)."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return torch.randperm(n, generator=g)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped: the batch estimators want equal sizes)."""
    return n // batch_size


def index_batches(seed: int, n: int, batch_size: int, start_step: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (epoch, indices) from optimisation step ``start_step`` on, forever."""
    per_epoch = steps_per_epoch(n, batch_size)
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        perm = epoch_permutation(seed, epoch, n)
        for b in range(offset, per_epoch):
            yield epoch, perm[b * batch_size:(b + 1) * batch_size]
        epoch, offset = epoch + 1, 0
