"""How fast the dSprites replica renders, and how fast its training loader feeds batches.

    .venv/bin/python benchmarks/data_speed.py [--batch-size 64] [--batches 300] [--keep DIR]

Prints, from one run on this machine:
- the time to render the full 737,280-image grid, to write it to a cache and to read it back
  (hash-checked), and the peak memory (resident set) of the process after each phase;
- the training loader's batches per second (bit-packed rows unpacked per batch) against iterating a
  plain in-memory float32 tensor holding exactly the same batches, and their ratio;
- the same with torch DataLoader workers (0, 1, 2), first on bare iteration, then with a training
  step of the paper's dSprites MLP (Appendix G) in the loop, which is what decides whether workers
  help or hurt on this machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imae_kit.data import dsprites as D  # noqa: E402
from imae_kit.data.loader import epoch_batches, iterate_batches  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(fn, n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` runs of ``fn()`` (which handles ``n`` batches), in batches per second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def paper_mlp_step(batch_size: int):
    """A training step of the paper's dSprites networks (Appendix G) with Adam, on random latents."""
    torch.manual_seed(0)
    enc = torch.nn.Sequential(torch.nn.Linear(4096, 1200), torch.nn.ReLU(), torch.nn.Linear(1200, 1200),
                              torch.nn.ReLU(), torch.nn.Linear(1200, 2400), torch.nn.ReLU(), torch.nn.Linear(2400, 23))
    dec = torch.nn.Sequential(torch.nn.Linear(13, 1200), torch.nn.ReLU(), torch.nn.Linear(1200, 1200), torch.nn.ReLU(),
                              torch.nn.Linear(1200, 1200), torch.nn.ReLU(), torch.nn.Linear(1200, 4096))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def step(x: torch.Tensor) -> None:
        h = enc(x)
        logits = dec(torch.cat([h[:, :10], torch.softmax(h[:, 20:], dim=1)], dim=1))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=300, help="batches per loader measurement")
    parser.add_argument("--train-steps", type=int, default=12, help="batches per measurement with a training step")
    parser.add_argument("--keep", default=None, help="data root to write the replica to (default: a temp dir)")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share these cores when it exceeds 0)")
    print(f"peak RSS after imports: {peak_rss_mib():.0f} MiB")

    # ---------------------------------------------------------------- render, write, read
    start = time.perf_counter()
    packed = D.render_grid()
    render_s = time.perf_counter() - start
    print(f"render the full dSprites grid ({len(packed):,} images): {render_s:.1f} s "
          f"({len(packed) / render_s:,.0f} images/s); packed size {packed.nbytes / 2**20:.0f} MiB; "
          f"peak RSS {peak_rss_mib():.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        path = D.replica_path(root)
        start = time.perf_counter()
        D.write_replica(path, packed, D.FactorGrid.full(), seconds=render_s)
        print(f"write the cache (sha256 + fsync + rename): {time.perf_counter() - start:.1f} s -> {path}")
        del packed
        start = time.perf_counter()
        packed, _ = D.read_replica(path, D.FactorGrid.full())
        print(f"read the cache back with its hash check: {time.perf_counter() - start:.2f} s; "
              f"peak RSS {peak_rss_mib():.0f} MiB")

    # ---------------------------------------------------------------- loader vs plain tensor
    train = D.DSpritesImages(torch.from_numpy(packed), D.FactorGrid.full())
    b, n = args.batch_size, args.batches
    batches = epoch_batches(len(train), b, seed=0)[:n]
    plain = torch.cat([train.get_batch(i).x for i in batches])  # the same batches, already float32
    print(f"\nbatch size {b}, {n} shuffled batches; plain tensor of those batches: {plain.nbytes / 2**20:.0f} MiB")

    def loader_loop():
        for i in batches:
            train.get_batch(i)

    def plain_loop():
        for k in range(n):
            plain[k * b:(k + 1) * b].clone()  # a copy, as a batch handed to a model would be

    def plain_gather_loop():
        for k in range(n):
            plain.index_select(0, torch.arange(k * b, (k + 1) * b))

    r_loader = rate(loader_loop, n)
    r_plain = rate(plain_loop, n)
    r_gather = rate(plain_gather_loop, n)
    print(f"packed loader (unpack per batch):     {r_loader:8.0f} batches/s")
    print(f"plain float32 tensor, slice + copy:   {r_plain:8.0f} batches/s   ratio loader/plain = {r_loader / r_plain:.2f}")
    print(f"plain float32 tensor, index gather:   {r_gather:8.0f} batches/s   ratio loader/plain = {r_loader / r_gather:.2f}")

    # ---------------------------------------------------------------- DataLoader workers
    sub = train.subset(torch.cat(batches))  # the same examples, so every variant reads the same rows
    print("\nDataLoader workers, bare iteration (a whole epoch of the same examples):")
    for workers in (0, 1, 2):
        r = rate(lambda: sum(1 for _ in iterate_batches(sub, b, seed=1, num_workers=workers)), n, repeats=2)
        print(f"  num_workers={workers}: {r:8.0f} batches/s")

    step = paper_mlp_step(b)
    steps = min(args.train_steps, n)
    sub_steps = train.subset(torch.cat(batches[:steps]))
    print(f"DataLoader workers with a training step of the paper's dSprites MLP in the loop ({steps} steps):")
    plain_steps = plain[: steps * b]

    def train_plain():
        for k in range(steps):
            step(plain_steps[k * b:(k + 1) * b])

    r_ref = rate(train_plain, steps, repeats=2)
    print(f"  plain tensor:  {r_ref:6.1f} steps/s")
    for workers in (0, 1, 2):
        def train_loop():
            for batch in iterate_batches(sub_steps, b, seed=1, num_workers=workers):
                step(batch.x)
        r = rate(train_loop, steps, repeats=2)
        print(f"  num_workers={workers}: {r:6.1f} steps/s   ratio to plain = {r / r_ref:.3f}")
    print(f"\npeak RSS at the end: {peak_rss_mib():.0f} MiB; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
