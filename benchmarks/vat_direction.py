"""How well each way of taking VAT's Hessian-vector product finds H d, on the recipes' own networks and data.

For the dSprites and MNIST IMAE recipes at initialisation (seed 0) and a batch of real training images, the
per-example cosine between H d (d random) and the same product in float64 (Miyato et al.'s finite difference
at xi = 1e-6 there, which in float64 is accurate to about 1e-7) for: the finite difference in fp32 (the only
way before ``hvp = "exact"``), the exact product in fp32, and the exact product in bf16 where the CPU has it.
Prints the minimum and median cosine of each.

    python benchmarks/vat_direction.py [--batch 64] [--seed 0] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from imae_kit.estimators import categorical_kl
from imae_kit.precision import cpu_has_native_bf16, full_precision, step_autocast
from imae_kit.terms.information import hessian_vector_product
from imae_kit.training import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from throughput import load_data, recipe_for  # noqa: E402


def finite_difference(encode, x: torch.Tensor, d: torch.Tensor, xi: float = 1e-6) -> torch.Tensor:
    """grad_r KL(p(y|x) || p(y|x + r)) at r = xi d, divided by xi (Miyato et al.)."""
    target = encode(x).logits.detach()
    probe = (xi * d).requires_grad_(True)
    kl = categorical_kl(target, encode(x + probe).logits).sum()
    return torch.autograd.grad(kl, probe)[0] / xi


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = "bf16" if cpu_has_native_bf16() else "fp32"
    for name in ("dsprites", "mnist"):
        recipe = recipe_for(name, args.batch, precision, 1)
        splits = load_data(recipe)
        trainer = Trainer(recipe, None, progress=False, splits=splits)  # training mode, as VAT runs
        g = torch.Generator().manual_seed(args.seed)
        x = splits.train.get_batch(torch.randperm(len(splits.train), generator=g)[:args.batch]).x
        d = torch.randn(x.shape, generator=g)
        d = d / d.norm(dim=1, keepdim=True)
        model = trainer.model
        truth = finite_difference(model.double().encode, x.double(), d.double())
        model.float()
        with full_precision():
            rows = {"fp32 finite difference (xi 1e-6)": finite_difference(model.encode, x, d),
                    "fp32 exact": hessian_vector_product(model.encode, x, d)}
        if precision == "bf16":
            with step_autocast("cpu", torch.bfloat16):
                rows["bf16 exact"] = hessian_vector_product(model.encode, x, d)
        print(f"== imae_{name}, {args.batch} training images, cosine with float64's H d per example ==")
        for label, hd in rows.items():
            cos = torch.nn.functional.cosine_similarity(hd.double(), truth, dim=1)
            print(f"  {label:34s} min {cos.min().item():7.4f}  median {cos.median().item():7.4f}")


if __name__ == "__main__":
    main()
