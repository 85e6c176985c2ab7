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
Variants are timed round-robin, best round kept, so load from other processes hits them alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imae_kit.data import dsprites as D  # noqa: E402
from imae_kit.data import dsprites_cache as cache  # noqa: E402
from imae_kit.data import dsprites_render as render  # noqa: E402
from imae_kit.data.dsprites_grid import FactorGrid  # noqa: E402
from imae_kit.data.loader import epoch_batches, iterate_batches  # noqa: E402


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rates(variants: dict, rounds: int) -> dict:
    """Batches (or steps) per second of each variant ``name: (fn, n)``, where ``fn()`` handles ``n``:
    the variants run round-robin ``rounds`` times and each keeps its best round, so a burst of load
    from another process hits every variant alike instead of one."""
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, (fn, n) in variants.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return {name: 1.0 / seconds for name, seconds in best.items()}


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
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--keep", default=None, help="data root to write the replica to (default: a temp dir)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share these cores when it exceeds 0)")
    print(f"peak RSS after imports: {peak_rss_mib():.0f} MiB")

    # ---------------------------------------------------------------- render, write, read
    start = time.perf_counter()
    packed = render.render_grid()
    render_s = time.perf_counter() - start
    print(f"render the full dSprites grid ({len(packed):,} images): {render_s:.1f} s "
          f"({len(packed) / render_s:,.0f} images/s); packed size {packed.nbytes / 2**20:.0f} MiB; "
          f"peak RSS {peak_rss_mib():.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        path = cache.replica_path(root)
        start = time.perf_counter()
        cache.write_replica(path, packed, FactorGrid.full(), seconds=render_s)
        print(f"write the cache (sha256 + fsync + rename): {time.perf_counter() - start:.1f} s -> {path}")
        del packed
        start = time.perf_counter()
        packed, _ = cache.read_replica(path, FactorGrid.full())
        print(f"read the cache back with its hash check: {time.perf_counter() - start:.2f} s; "
              f"peak RSS {peak_rss_mib():.0f} MiB")

    # ---------------------------------------------------------------- loader vs plain tensor
    train = D.DSpritesImages(torch.from_numpy(packed), FactorGrid.full())
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

    r = rates({"loader": (loader_loop, n), "slice": (plain_loop, n), "gather": (plain_gather_loop, n)}, rounds=5)
    print(f"packed loader (unpack per batch):     {r['loader']:8.0f} batches/s")
    print(f"plain float32 tensor, slice + copy:   {r['slice']:8.0f} batches/s   "
          f"ratio loader/plain = {r['loader'] / r['slice']:.2f}")
    print(f"plain float32 tensor, index gather:   {r['gather']:8.0f} batches/s   "
          f"ratio loader/plain = {r['loader'] / r['gather']:.2f}")

    # ---------------------------------------------------------------- DataLoader workers
    sub = train.subset(torch.cat(batches))  # the same examples, so every variant reads the same rows
    print("\nDataLoader workers, bare iteration (an epoch of the same examples):")
    bare = {w: (lambda w=w: sum(1 for _ in iterate_batches(sub, b, seed=1, num_workers=w)), n) for w in (0, 1, 2)}
    for w, value in rates(bare, rounds=2).items():
        print(f"  num_workers={w}: {value:8.0f} batches/s")

    step = paper_mlp_step(b)
    steps = min(args.train_steps, n)
    sub_steps = train.subset(torch.cat(batches[:steps]))
    plain_steps = plain[: steps * b]
    for k in range(3):  # warm-up: first allocations, Adam's state
        step(plain_steps[k * b:(k + 1) * b])

    def train_plain():
        for k in range(steps):
            step(plain_steps[k * b:(k + 1) * b])

    def train_loader(workers: int):
        for batch in iterate_batches(sub_steps, b, seed=1, num_workers=workers):
            step(batch.x)

    variants = {"plain": (train_plain, steps)}
    variants.update({w: (lambda w=w: train_loader(w), steps) for w in (0, 1, 2)})
    r = rates(variants, rounds=3)
    print(f"with a training step of the paper's dSprites MLP in the loop ({steps} steps a round, best of 3 rounds):")
    print(f"  plain tensor:  {r['plain']:6.2f} steps/s")
    for w in (0, 1, 2):
        print(f"  num_workers={w}: {r[w]:6.2f} steps/s   ratio to plain = {r[w] / r['plain']:.3f}")
    print(f"\npeak RSS at the end: {peak_rss_mib():.0f} MiB; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
