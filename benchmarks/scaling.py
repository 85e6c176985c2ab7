"""Data-parallel scaling: images/s of the real trainer's step with 1, 2, ... processes, and what the
batch statistics' collectives (the all-gathers of the terms and BatchNorm's sums, forward and backward) cost.

Each configuration is N processes started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT; gloo on
the CPU, NCCL on CUDA), each with cores / N torch threads unless ``--threads``; each times the trainer's own
loop body on its slice of the global batch: the batch, ``Trainer.forward`` through DDP (every term, the
gathers, VAT's passes), the values agreed over processes and checked, backward (with DDP's gradient
all-reduce), the gradient check, Adam and the stop agreement. The step time is the slowest process's median
over ``--steps`` steps after ``--warmup``; "collectives" is the median time per step spent inside the
batch-statistic collectives (DDP's own gradient all-reduce overlaps backward and is not in it).

    python benchmarks/scaling.py [--recipe dsprites|mnist] [--processes 1,2] [--batch-size B] [--steps 10]
                                 [--warmup 2] [--threads T] [--synthetic] [--small]

``--small``: the toy data set with tiny networks (a check that it runs, in seconds). On a machine with fewer
cores than processes x threads the processes only contend: expect no speed-up there (README, "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from imae_kit import distributed
from imae_kit.recipe import load_recipe
from imae_kit.training import index_batches
from imae_kit.training.processes import make_trainer
from imae_kit.training.signals import StopFlag

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import synthetic_splits  # noqa: E402  (the same random images as the throughput benchmark)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SMALL = ['data={ name = "toy_shapes" }', "model.latent_continuous=4", "model.latent_discrete=3",
         "model.encoder.hidden=[64]", "model.decoder.hidden=[64]"]
BATCH_COLLECTIVES = ("gathering the batch", "summing the gradient", "summing over processes")


def worker(rank: int, world: int, port: int, args: argparse.Namespace, threads: int, out: str) -> None:
    """One process of a configuration: time the loop body, hand the medians to rank 0, which writes them."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    process = distributed.init_from_environment()
    overrides = [f"train.batch_size={args.batch_size}", "train.log_every=1000000", "train.checkpoint_every=0",
                 "train.eval_every=0"] + (SMALL if args.small else []) + [f"train.device={json.dumps(args.device)}"]
    recipe = load_recipe(RECIPES / f"imae_{args.recipe}.toml", overrides=overrides, steps=args.warmup + args.steps)
    splits = synthetic_splits(args.recipe) if args.synthetic and not args.small else None
    trainer = make_trainer(recipe, None, progress=False, splits=splits)
    spent = [0.0]
    timed = distributed._collective

    def counted(what, fn, *a, **kw):  # time inside the batch statistics' collectives
        if what not in BATCH_COLLECTIVES:
            return timed(what, fn, *a, **kw)
        start = time.perf_counter()
        try:
            return timed(what, fn, *a, **kw)
        finally:
            spent[0] += time.perf_counter() - start

    distributed._collective = counted
    batches = index_batches(recipe.train.seed, len(trainer.train_set), recipe.train.batch_size, 0)
    flag = StopFlag()
    steps, comms = [], []
    for i in range(args.warmup + args.steps):
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        spent[0] = 0.0
        start = time.perf_counter()
        _, index = next(batches)
        local = trainer._local_indices(index)
        x = trainer.train_set.get_batch(local).x.to(trainer.device)
        objective = trainer.forward(x, i, index=local)
        trainer.objective.check_finite(trainer._global_output(objective), i)
        trainer.optimizer.zero_grad(set_to_none=True)
        objective.loss.backward()
        trainer._clip_and_check_gradients(0.0, x, {})
        trainer.optimizer.step()
        trainer._stop_requested(flag)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        steps.append(time.perf_counter() - start)
        comms.append(spent[0])
    mine = (statistics.median(steps[args.warmup:]), statistics.median(comms[args.warmup:]))
    every = process.all_objects(mine)
    if process.is_main:
        Path(out).write_text(json.dumps({"steps": [s for s, _ in every], "collectives": [c for _, c in every],
                                         "device": str(trainer.device), "data": trainer.splits.description}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="dsprites", choices=("dsprites", "mnist"))
    ap.add_argument("--processes", default="1,2", help="process counts to measure, e.g. 1,2,4")
    ap.add_argument("--batch-size", type=int, default=512, help="the global batch")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0: cores / processes)")
    ap.add_argument("--device", default="cpu", help="cpu, or auto / cuda (one GPU per process)")
    ap.add_argument("--synthetic", action="store_true", help="random images instead of the real data set")
    ap.add_argument("--small", action="store_true", help="toy data set and tiny networks: a check that it runs")
    args = ap.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {cores} cores, recipe imae_{args.recipe}{' (small)' if args.small else ''}, "
          f"global batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'processes':>9} {'threads':>7} {'step ms':>8} {'images/s':>9} {'speed-up':>8} {'collect. ms':>11} "
          f"{'share':>6}")
    base = None
    for n in counts:
        threads = args.threads or max(1, cores // n)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            mp.start_processes(worker, args=(n, free_port(), args, threads, str(out)), nprocs=n, start_method="spawn")
            result = json.loads(out.read_text())
        step = max(result["steps"])
        comm = statistics.median(result["collectives"])
        ips = args.batch_size / step
        base = base or ips
        print(f"{n:>9} {threads:>7} {step * 1e3:>8.1f} {ips:>9.0f} {ips / base:>8.2f} {comm * 1e3:>11.1f} "
              f"{comm / step:>6.1%}", flush=True)
    print(f"device {result['device']}, data {result['data']}")


if __name__ == "__main__":
    sys.exit(main())
