"""Training throughput against the machine's measured matrix-multiply peak, in fp32 and bf16.

In one run:

1. the peak: GFLOP/s of 1024^3 and 2048^3 matmuls and of each Linear layer shape of the recipe's networks
   (at the smallest and largest batch size), in fp32 and in bf16; the peak is the best of them (on the AMX
   machine 1024^3 reached 1,685 GFLOP/s in bf16 where 2048^3 reached 2,878 and the recipe's own layers up to
   3,466, so 1024^3 alone understates what the machine does; its ratio is printed too, as the speed issue
   quoted that figure);
2. the model FLOPs of one training step, counted exactly with ``torch.utils.flop_counter.FlopCounterMode``
   (forward, backward and VAT's extra passes, as the real ``Trainer.forward`` runs them);
3. the real trainer's steps at several batch sizes in both precisions: images/s, achieved GFLOP/s and the
   ratio to the bf16 peak, and the speed-up over the baseline (fp32, batch 64) measured in the same run.

4. at the recipe's default batch in bf16 where the CPU has it (else fp32), two measured levers side by side:
   VAT's Hessian-vector product (``hvp = "exact"``, the default, against Miyato et al.'s finite difference
   with fp32 networks) and the allocator (``imae_kit.memory``'s kept pages against glibc's defaults, the
   latter in a child process with ``IMAE_KIT_MALLOC=system``, since the setting is process-wide), and subnormal
   floats flushed (``imae_kit.denormals``) against kept (``IMAE_KIT_DENORMALS=keep``, a child process too).

``--from-run RUN_DIR`` times the steps of that run's trained model and Adam state instead of a fresh one. A
fresh model hides what training spends most of its time on: the subnormals of a trained model's Adam moments
and the underflowing exponentials of its sharp posteriors appear after a few hundred steps.

Each timing is the median over ``--steps`` steps (after ``--warmup``) of the trainer's own loop body: the
batch, ``Trainer.forward`` (every term, VAT's passes), the finiteness checks, backward and Adam; the run's
bookkeeping (logging, checkpoints) is left out. The median resists the noise of a shared machine.

    python benchmarks/throughput.py [--recipe dsprites] [--recipe mnist] [--batch-sizes 64,256,1024,2048]
                                    [--precisions fp32,bf16] [--steps 8] [--threads N] [--synthetic]
                                    [--no-levers] [--from-run RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from imae_kit.data.base import DataSplits, TensorImages
from imae_kit.denormals import flush_denormals
from imae_kit.errors import ImaeKitError
from imae_kit.precision import cpu_has_native_bf16
from imae_kit.recipe import load_recipe
from imae_kit.training import Trainer, index_batches, load_data

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SQUARES = (1024, 2048)  # square matmuls timed for the peak, beside the recipe's own layer shapes


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.4) -> float:
    """Median GFLOP/s of [m, k] @ [k, n] in ``dtype`` over repeated timings."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        t = time.perf_counter()
        a @ b
        rates.append(2 * m * k * n / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every Linear layer of the model."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def synthetic_splits(like: str, n: int = 8192) -> DataSplits:
    """Random binary images of the recipe's data shape (the cost does not depend on the pixels)."""
    side = 64 if like == "dsprites" else 28
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, side, side, generator=g) < 0.1).to(torch.uint8) * 255
    ds = TensorImages(images=images, labels=torch.randint(0, 3, (n,), generator=g), num_classes=3)
    return DataSplits(train=ds, test=ds, description="synthetic")


def recipe_for(name: str, batch: int, precision: str, steps: int, hvp: str | None = None):
    """The IMAE recipe of ``name`` at this batch size and precision, logging rarely, no periodic checkpoint
    (``hvp``: VAT's Hessian-vector product, if not the recipe's)."""
    extra = [f'objective.terms.vat.params.hvp="{hvp}"'] if hvp else []
    return load_recipe(RECIPES / f"imae_{name}.toml", overrides=[
        f"train.batch_size={batch}", f'train.precision="{precision}"', f"train.log_every={10**6}",
        "train.checkpoint_every=0", *extra], steps=steps)


def load_state(run: str | None) -> dict | None:
    """The model and optimiser state of a run's checkpoint (``--from-run``), or None."""
    if not run:
        return None
    state = torch.load(Path(run) / "checkpoint.pt", weights_only=True, map_location="cpu")
    return {"model": state["model"], "optimizer": state["optimizer"]}


def step_seconds(name: str, batch: int, precision: str, steps: int, warmup: int, splits: DataSplits,
                 hvp: str | None = None, state: dict | None = None) -> float:
    """Median wall seconds of one training step: the trainer's own loop body (batch, ``Trainer.forward``, the
    finiteness checks, backward, gradient check, Adam) on a fresh trainer (or one holding ``state``: a trained
    model and its Adam moments), after ``warmup`` steps."""
    trainer = Trainer(recipe_for(name, batch, precision, warmup + steps, hvp), None, progress=False, splits=splits)
    if state is not None:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    batches = index_batches(trainer.recipe.train.seed, len(trainer.train_set), batch, 0)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        _, index = next(batches)
        x = trainer.train_set.get_batch(index).x
        out = trainer.forward(x, i, index=index)
        trainer.objective.check_finite(out, i)
        trainer.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        trainer._clip_and_check_gradients(0.0, x, {})
        trainer.optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def step_flops(name: str, batch: int, precision: str, splits: DataSplits) -> tuple[int, Trainer]:
    """Model FLOPs of one training step (forward, backward, VAT's passes) counted by FlopCounterMode."""
    trainer = Trainer(recipe_for(name, batch, precision, 1), None, progress=False, splits=splits)
    x = splits.train.get_batch(torch.arange(batch)).x
    counter = FlopCounterMode(display=False)
    with counter:
        out = trainer.forward(x, 0, index=torch.arange(batch))
        out.loss.backward()
    return counter.get_total_flops(), trainer


def child_step_seconds(name: str, batch: int, precision: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    """``step_seconds`` in a child process with ``env`` added (a process-wide setting: ``IMAE_KIT_MALLOC``,
    ``IMAE_KIT_DENORMALS``)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import throughput as T; "
            f"T.flush_denormals(); import torch; torch.set_num_threads({torch.get_num_threads()}); "
            f"splits = T.synthetic_splits({name!r}) if {args.synthetic!r} else "
            f"T.load_data(T.recipe_for({name!r}, 64, 'fp32', 1)); "
            f"print(json.dumps(T.step_seconds({name!r}, {batch}, {precision!r}, {args.steps}, {args.warmup}, splits, "
            f"state=T.load_state({args.from_run!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def levers(name: str, splits: DataSplits, args: argparse.Namespace, state: dict | None) -> None:
    """Step time at the recipe's default batch with each measured lever on and off, side by side (on ``state``,
    the trained model of ``--from-run``, when given; the child processes load it themselves)."""
    batch = load_recipe(RECIPES / f"imae_{name}.toml").train.batch_size
    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    exact = step_seconds(name, batch, precision, args.steps, args.warmup, splits, state=state)
    fd = step_seconds(name, batch, precision, args.steps, args.warmup, splits, hvp="finite_difference", state=state)
    system = child_step_seconds(name, batch, precision, args, {"IMAE_KIT_MALLOC": "system"})
    kept = child_step_seconds(name, batch, precision, args, {"IMAE_KIT_DENORMALS": "keep"})
    print(f"levers at batch {batch}, {precision}, {'trained state of ' + args.from_run if state else 'fresh model'}: "
          f"this step {exact * 1e3:.0f} ms ({batch / exact:.0f} images/s); "
          f"VAT by finite difference {fd * 1e3:.0f} ms ({fd / exact:.2f}x); glibc's default allocator "
          f"{system * 1e3:.0f} ms ({system / exact:.2f}x); subnormals kept {kept * 1e3:.0f} ms ({kept / exact:.2f}x)")


def main() -> None:
    """Measure and print."""
    flush_denormals()  # as the imae-kit command does, before torch's threads exist (IMAE_KIT_DENORMALS=keep: not)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", action="append", choices=("dsprites", "mnist"), help="repeatable (default both)")
    ap.add_argument("--batch-sizes", default="64,256,1024,2048")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--synthetic", action="store_true", help="random images instead of the real data sets")
    ap.add_argument("--no-levers", action="store_true", help="skip the side-by-side lever timings")
    ap.add_argument("--from-run", default=None, help="time steps of this run's trained model and Adam state (its "
                    "checkpoint.pt; same recipe networks) instead of a fresh one: what most of a run's steps cost")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.recipe or ["dsprites", "mnist"]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    precisions = args.precisions.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    dtypes = (("fp32", torch.float32), ("bf16", torch.bfloat16))
    squares = {n: {p: matmul_gflops(n, n, n, dt) for p, dt in dtypes} for n in SQUARES}
    print("matmul " + "; ".join(f"{n}^3: fp32 {r['fp32']:.0f}, bf16 {r['bf16']:.0f}" for n, r in squares.items())
          + " GFLOP/s")

    for name in names:
        try:
            splits = synthetic_splits(name) if args.synthetic else load_data(recipe_for(name, 64, "fp32", 1))
        except ImaeKitError as exc:
            print(f"{name}: real data not available ({exc}); using synthetic images")
            splits = synthetic_splits(name)
        print(f"\n== imae_{name} ({splits.description}) ==")
        flops: dict[tuple[int, str], int] = {}
        for b in batches:
            for p in precisions:
                flops[b, p], trainer = step_flops(name, b, p, splits)
        shapes = linear_shapes(trainer.model)
        peak = {p: max(r[p] for r in squares.values()) for p, _ in dtypes}
        for b in (batches[0], batches[-1]):
            cells = []
            for p, dt in dtypes:
                rates = [matmul_gflops(b, i, o, dt, seconds=0.15) for i, o in shapes]
                peak[p] = max(peak[p], *rates)
                cells.append(f"{p} " + " ".join(f"{r:.0f}" for r in rates))
            print(f"layer shapes {shapes} at batch {b}, GFLOP/s: " + "; ".join(cells))
        print(f"peak (the best of the above): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
        ref = squares[1024]["bf16"]

        state = load_state(args.from_run)
        step_seconds(name, 64, "fp32", 1, 2, splits)  # a throw-away trainer: the first one in a process is slow
        base_seconds = step_seconds(name, 64, "fp32", args.steps, args.warmup, splits, state=state)
        base_ips = 64 / base_seconds
        print(f"baseline fp32 batch 64: {base_ips:.0f} images/s")
        print(f"{'batch':>6} {'prec':>5} {'MFLOP/img':>9} {'images/s':>9} {'GFLOP/s':>8} {'of bf16 peak':>12} "
              f"{'of fp32 peak':>12} {'of bf16 1024^3':>14} {'vs baseline':>11}")
        for b in batches:
            for p in precisions:
                per_step = step_seconds(name, b, p, args.steps, args.warmup, splits, state=state)
                ips = b / per_step
                gflops = flops[b, p] / per_step / 1e9
                print(f"{b:>6} {p:>5} {flops[b, p] / b / 1e6:>9.1f} {ips:>9.0f} {gflops:>8.0f} "
                      f"{gflops / peak['bf16']:>11.1%} {gflops / peak['fp32']:>11.1%} {gflops / ref:>13.1%} "
                      f"{ips / base_ips:>10.2f}x")
        if not args.no_levers:
            levers(name, splits, args, state)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
