"""Training steps per second: the composed IMAE recipe against a hand-written PyTorch loop.

Both train the MNIST networks of PAPER.md Appendix G with every IMAE term on (reconstruction, I(x;y),
VAT, Gaussian-matching KL, total correlation) on the same in-memory data, in the same process,
alternating rounds so machine noise hits both alike. The composed side is the real ``Trainer.run``
(data order, logging every ``log_every`` steps with the monitored terms, progress bar off, final
checkpoint); the hand-written side is ``reference_loop.imae_loss`` with Adam in a bare loop.

    python benchmarks/step_speed.py [--steps 150] [--rounds 3] [--batch-size 100] [--threads N]
                                    [--precision fp32|bf16] [--hvp finite_difference|exact]

Prints steps/s for each and the ratio composed/hand-written time (goal: at most 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reference_loop import EQ10_OVERRIDES, imae_loss, mnist_networks  # noqa: E402

from imae_kit.data.base import DataSplits, TensorImages  # noqa: E402
from imae_kit.denormals import flush_denormals  # noqa: E402
from imae_kit.recipe import load_recipe  # noqa: E402
from imae_kit.runs import RunDir  # noqa: E402
from imae_kit.training import Trainer  # noqa: E402

RECIPE = HERE.parent / "recipes" / "imae_mnist.toml"


def fake_mnist(n: int, seed: int = 0) -> DataSplits:
    """n binary 28x28 images (random strokes are not needed: the cost does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 28, 28, generator=g) < 0.13).to(torch.uint8) * 255
    labels = torch.randint(0, 10, (n,), generator=g)
    ds = TensorImages(images=images, labels=labels, num_classes=10)
    return DataSplits(train=ds, test=ds, description="benchmark: random binary 28x28")


def time_composed(splits: DataSplits, steps: int, batch_size: int, log_every: int, precision: str,
                  hvp: str = "finite_difference") -> float:
    """Seconds for ``steps`` steps of the real trainer on the IMAE MNIST recipe."""
    recipe = load_recipe(RECIPE, overrides=[f"train.batch_size={batch_size}", f"train.log_every={log_every}",
                                            "train.checkpoint_every=0", f'train.precision="{precision}"',
                                            f'objective.terms.vat.params.hvp="{hvp}"', *EQ10_OVERRIDES],
                         steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, RunDir.create("bench", out=Path(tmp) / "run"), progress=False, splits=splits)
        start = time.perf_counter()
        trainer.run()
        return time.perf_counter() - start


def time_handwritten(splits: DataSplits, steps: int, batch_size: int, beta: float, precision: str,
                     hvp: str = "finite_difference") -> float:
    """Seconds for ``steps`` steps of the bare loop with the same networks, loss and optimiser."""
    torch.manual_seed(0)
    enc, dec = mnist_networks()
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)  # as the recipe (the trainer's Adam is fused too)
    n = len(splits.train)
    perm = torch.randperm(n)
    start = time.perf_counter()
    for s in range(steps):
        b = s % (n // batch_size)
        x = splits.train.get_batch(perm[b * batch_size:(b + 1) * batch_size]).x
        loss, _ = imae_loss(enc, dec, x, beta=beta, gamma=2 * beta, k1=10, bf16=precision == "bf16", hvp=hvp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    """Run the rounds and print the figures."""
    flush_denormals()  # as the imae-kit command does, for both loops alike
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="both sides' network arithmetic")
    ap.add_argument("--hvp", choices=("finite_difference", "exact"), default="finite_difference",
                    help="VAT's product on both sides (default: the finite difference, the one both compute the "
                         "same way; their exact products take different routes, forward mode and double backward)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    beta = float(load_recipe(RECIPE).vars["beta"])
    splits = fake_mnist(6000)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.precision}, VAT {args.hvp}; MNIST IMAE networks, batch "
          f"{args.batch_size}, {args.steps} steps per round, {args.rounds} rounds, log every {args.log_every}")
    time_handwritten(splits, 10, args.batch_size, beta, args.precision, args.hvp)  # warm-up both paths
    time_composed(splits, 10, args.batch_size, args.log_every, args.precision, args.hvp)
    hand, composed = [], []
    for r in range(args.rounds):
        # alternate which side goes first, so neither always runs on a warmer (or noisier) machine
        if r % 2 == 0:
            hand.append(time_handwritten(splits, args.steps, args.batch_size, beta, args.precision, args.hvp))
            composed.append(time_composed(splits, args.steps, args.batch_size, args.log_every, args.precision, args.hvp))
        else:
            composed.append(time_composed(splits, args.steps, args.batch_size, args.log_every, args.precision, args.hvp))
            hand.append(time_handwritten(splits, args.steps, args.batch_size, beta, args.precision, args.hvp))
        print(f"round {r + 1}: hand-written {args.steps / hand[-1]:6.1f} steps/s   "
              f"composed {args.steps / composed[-1]:6.1f} steps/s   ratio {composed[-1] / hand[-1]:.3f}")
    h, c = statistics.median(hand), statistics.median(composed)
    print(f"median: hand-written {args.steps / h:.1f} steps/s, composed {args.steps / c:.1f} steps/s")
    ratios = [c_ / h_ for c_, h_ in zip(composed, hand)]
    print(f"composed / hand-written time = {c / h:.3f} (ratio of medians), "
          f"{statistics.median(ratios):.3f} (median of the rounds' ratios)  (goal <= 1.10)")
    print("the composed side includes the trainer's fixed costs: logging the monitored terms every "
          f"{args.log_every} steps, run.json and the final checkpoint (atomic, fsynced)")


if __name__ == "__main__":
    main()
