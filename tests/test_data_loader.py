"""Batch iteration: reproducible epochs, and the same batches with or without DataLoader workers."""

from __future__ import annotations

import torch

from imae_kit.data import dsprites as D
from imae_kit.data import dsprites_render as render
from imae_kit.data.dsprites_grid import FactorGrid
from imae_kit.data.loader import epoch_batches, iterate_batches

GRID = FactorGrid(shape=(0, 1, 2), scale=(1.0,), orientation=(0.0, 1.0), pos_x=(0.0, 0.5, 1.0), pos_y=(0.2, 0.8))


def test_epoch_batches_cover_every_example_once():
    batches = epoch_batches(103, 10, seed=1, epoch=0, drop_last=False)
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert len(epoch_batches(103, 10, seed=1, epoch=0)) == 10  # drop_last
    same = epoch_batches(103, 10, seed=1, epoch=0, drop_last=False)
    assert all(torch.equal(a, b) for a, b in zip(batches, same))
    other = epoch_batches(103, 10, seed=1, epoch=1, drop_last=False)
    assert not torch.equal(torch.cat(batches), torch.cat(other))
    assert torch.equal(torch.cat(epoch_batches(7, 3, shuffle=False, drop_last=False)), torch.arange(7))


def test_workers_give_the_same_batches():
    ds = D.DSpritesImages(torch.from_numpy(render.render_grid(GRID)), GRID)
    plain = list(iterate_batches(ds, 5, seed=3))
    workers = list(iterate_batches(ds, 5, seed=3, num_workers=1))
    assert len(plain) == len(workers) == len(GRID) // 5
    for a, b in zip(plain, workers):
        assert torch.equal(a.x, b.x) and torch.equal(a.factors, b.factors) and torch.equal(a.labels, b.labels)
