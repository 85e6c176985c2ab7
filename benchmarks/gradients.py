"""Which term dominates the gradient: the norm of each weighted term's gradient on the encoder and the decoder.

For a run directory (its checkpoint and recipe) or a recipe at initialisation, on a few batches of the
training data: for each term weighted in at the run's last step, the L2 norm of the gradient of its
contribution to the loss (sign * weight * value) with respect to the encoder's and the decoder's parameters,
and its share of the sum of the norms. Random draws are the same for every term (one seed per batch).

    python benchmarks/gradients.py RUN_DIR_OR_RECIPE [--batches 4] [--batch-size N] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from imae_kit.recipe import load_recipe
from imae_kit.runs import RunDir, load_checkpoint
from imae_kit.training import Trainer


def main() -> None:
    """Print the per-term gradient norms."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a run directory or a recipe file")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.source)
    run_dir = RunDir.open(path) if path.is_dir() else None
    overrides = [f"train.batch_size={args.batch_size}"] if args.batch_size else []
    recipe = load_recipe(run_dir.recipe_path if run_dir else path, overrides)
    trainer = Trainer(recipe, None, progress=False)
    step = 0
    if run_dir is not None:
        state = load_checkpoint(run_dir.checkpoint_path)
        trainer.model.load_state_dict(state["model"])
        step = int(state["step"])
    parts = {"encoder": list(trainer.model.encoder.parameters()), "decoder": list(trainer.model.decoder.parameters())}
    norms: dict[str, dict[str, float]] = {}
    g = torch.Generator().manual_seed(0)
    for b in range(args.batches):
        index = torch.randperm(len(trainer.train_set), generator=g)[:recipe.train.batch_size]
        x = trainer.train_set.get_batch(index).x
        torch.manual_seed(b)
        out = trainer.forward(x, step, index=index)
        for wt in trainer.objective.terms:
            if wt.label not in out.active_values:
                continue
            contribution = -wt.sign * wt.weight.at(step) * out.active_values[wt.label]
            for part, params in parts.items():
                grads = torch.autograd.grad(contribution, params, retain_graph=True, allow_unused=True)
                norm = sum(float((gr.float() ** 2).sum()) for gr in grads if gr is not None) ** 0.5
                norms.setdefault(wt.label, {}).setdefault(part, 0.0)
                norms[wt.label][part] += norm / args.batches
    print(f"{recipe.name} at step {step} ({args.batches} batches of {recipe.train.batch_size}): "
          f"|d(weighted term)/d(parameters)|")
    print(f"{'term':<22} {'weight':>8} {'encoder':>10} {'share':>7} {'decoder':>10} {'share':>7}")
    totals = {part: sum(n.get(part, 0.0) for n in norms.values()) or 1.0 for part in parts}
    for wt in trainer.objective.terms:
        if wt.label in norms:
            e, d = norms[wt.label]["encoder"], norms[wt.label]["decoder"]
            print(f"{wt.label:<22} {wt.weight.at(step):>8g} {e:>10.4g} {e / totals['encoder']:>6.1%} "
                  f"{d:>10.4g} {d / totals['decoder']:>6.1%}")


if __name__ == "__main__":
    main()
