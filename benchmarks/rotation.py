"""Does the objective prefer the axis-aligned code? A run's loss and MIG with two latent dimensions rotated.

For a run directory (its checkpoint and recipe): the run's model is seen with two continuous dimensions
rotated by theta (``imae_kit.rotation``: the moment-matched diagonal posterior of the rotated code, the
decoder undoing the rotation), and for each theta this prints every weighted term's contribution to the
loss and the total, as differences from theta = 0 in nats per image on the same batches and the same
random draws (common random numbers), beside the MIG of the rotated code on the run's ``eval_every``
subset. An objective whose loss is flat over theta while the MIG moves cannot tell the disentangled
basis from an entangled one; one whose loss rises away from the trained basis holds the code there.

    python benchmarks/rotation.py RUN_DIR [--dims auto | I,J] [--angles 0,15,30,45,60,75,90]
                                          [--batches 8] [--threads N] [--no-mig] [--objective RECIPE]

``--dims auto`` rotates the two most informative dimensions (the largest eq. 5 lower bounds of I(x; z_k)
on the subset). ``--objective RECIPE`` weighs the same rotated model with another recipe's terms (its networks
must be the run's): e.g. beta-TCVAE's objective on an IMAE model, to tell the objective from the model.
theta = 90 swaps the pair, which the factorial encoder represents exactly: its row differs
from theta = 0 only by the Monte-Carlo draw, a check of the probe and a measure of its noise.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import attrs
import torch

from imae_kit.metrics.encodings import encode_dataset
from imae_kit.recipe import load_recipe
from imae_kit.rotation import informative_pair, objective_profile, rotated
from imae_kit.runs import RunDir, load_checkpoint
from imae_kit.training import Trainer
from imae_kit.training.monitor import TrainingMonitor


def main() -> None:
    """Print the loss and the MIG of a run's model over rotations of two latent dimensions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--dims", default="auto", help="'auto' or two dimensions, e.g. 0,3")
    ap.add_argument("--angles", default="0,15,30,45,60,75,90", help="degrees")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-mig", action="store_true", help="skip the MIG of each rotation")
    ap.add_argument("--objective", help="weigh the rotations with this recipe's terms (default: the run's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = RunDir.open(Path(args.run_dir))
    recipe = load_recipe(run_dir.recipe_path, [])
    if args.objective:  # the other recipe's terms, with the run's data and training settings
        other = load_recipe(Path(args.objective), [])
        recipe = attrs.evolve(recipe, objective=other.objective, name=f"{recipe.name} under {other.name}'s objective")
    trainer = Trainer(recipe, None, progress=False)
    state = load_checkpoint(run_dir.checkpoint_path)
    trainer.model.load_state_dict(state["model"])
    step = int(state["step"])
    model = trainer.model
    t = recipe.train
    monitor = trainer.monitor or TrainingMonitor(getattr(trainer.splits, t.eval_split), points=t.eval_points,
                                                 samples=t.eval_samples, seed=t.seed)
    enc = encode_dataset(model, monitor.dataset, batch_size=1000, indices=monitor.index)
    if args.dims == "auto":
        dims = informative_pair(enc.mu, enc.sigma)
    else:
        dims = tuple(int(d) for d in args.dims.split(","))
        if len(dims) != 2:
            ap.error(f"--dims takes two dimensions, e.g. 0,3; got {args.dims!r}")
    sigma_ratio = (enc.sigma.double().square().mean(0) / enc.mu.double().var(0)).sqrt()
    print(f"{recipe.name} at step {step}: rotating z{dims[0]} and z{dims[1]} "
          f"(E[sigma^2]^1/2 / sd(mu) = {float(sigma_ratio[dims[0]]):.3f}, {float(sigma_ratio[dims[1]]):.3f}); "
          f"{args.batches} batches of {t.batch_size}, the MIG on {len(monitor.index)} images")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(trainer.train_set), generator=g)[:t.batch_size] for _ in range(args.batches)]
    rows = []
    for degrees in (float(a) for a in args.angles.split(",")):
        m = rotated(model, dims, math.radians(degrees))
        row = {"theta": degrees, **objective_profile(trainer, m, step, batches)}
        if not args.no_mig:
            watched = monitor(m)
            row["mig_z"], row["mig_hist"] = watched.get("mig_z"), watched.get("mig_histogram_z")
        rows.append(row)
        print(f"  theta {degrees:5.1f}: loss {row['loss']:.3f}" +
              (f", MIG z {row['mig_z']:.3f}" if row.get("mig_z") is not None else ""), flush=True)
    base = rows[0]
    terms = [k for k in base if k not in ("theta", "loss", "mig_z", "mig_hist")]
    head = ["theta"] + [f"d {k}" for k in terms] + ["d loss"] + ([] if args.no_mig else ["MIG z", "MIG hist"])
    print("\nloss contributions, differences from theta = 0 (nats per image; + = the objective likes it less)")
    print(" | ".join(head))
    for row in rows:
        cells = [f"{row['theta']:.0f}"] + [f"{row[k] - base[k]:+.3f}" for k in terms] + [f"{row['loss'] - base['loss']:+.3f}"]
        if not args.no_mig:
            cells += [f"{row['mig_z']:.3f}" if row["mig_z"] is not None else "-",
                      f"{row['mig_hist']:.3f}" if row["mig_hist"] is not None else "-"]
        print(" | ".join(cells))
    print(f"\nat theta = 0: loss {base['loss']:.3f}; " + ", ".join(f"{k} {base[k]:.3f}" for k in terms))


if __name__ == "__main__":
    main()
