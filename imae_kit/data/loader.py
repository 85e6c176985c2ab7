"""Batches from an ArrayDataset: index batches in, Batch objects out, no per-item collation.

``iterate_batches(dataset, 256, seed=s, epoch=e)`` yields the batches of one epoch in the run's data
order (``imae_kit.data.order``: a function of seed and epoch only). ``num_workers > 0`` builds the
batches in a torch DataLoader's worker processes instead; the default, 0, builds them in-process:
handing a batch between processes costs more than unpacking it (``benchmarks/data_speed.py`` compares them).
"""

from __future__ import annotations

from typing import Iterator

import torch

from imae_kit.data.base import ArrayDataset, Batch
from imae_kit.data.order import epoch_permutation, steps_per_epoch


def epoch_batches(n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                  drop_last: bool = True) -> list[torch.Tensor]:
    """The index batches (1-D long tensors) of one epoch over ``n`` examples."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = epoch_permutation(seed, epoch, n) if shuffle else torch.arange(n)
    stop = steps_per_epoch(n, batch_size) * batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


class _BatchList(torch.utils.data.Dataset):
    """A map-style view whose item ``i`` is the whole batch ``batches[i]`` (for DataLoader workers)."""

    def __init__(self, dataset: ArrayDataset, batches: list[torch.Tensor]) -> None:
        self.dataset = dataset
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return self.dataset.get_batch(self.batches[i])


def _keep(batch: Batch) -> Batch:
    return batch


def iterate_batches(dataset: ArrayDataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                    epoch: int = 0, drop_last: bool = True, num_workers: int = 0) -> Iterator[Batch]:
    """Yield the Batches of one epoch; ``num_workers`` > 0 builds them in DataLoader worker processes."""
    batches = epoch_batches(len(dataset), batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last)
    if num_workers <= 0:
        for index in batches:
            yield dataset.get_batch(index)
        return
    loader = torch.utils.data.DataLoader(
        _BatchList(dataset, batches), batch_size=None, shuffle=False, num_workers=num_workers,
        collate_fn=_keep, persistent_workers=False, prefetch_factor=4,
    )
    yield from loader
