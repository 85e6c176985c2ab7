"""Does the objective prefer the axis-aligned code? A run's loss and MIG with two latent dimensions rotated.

For a run directory (its checkpoint and recipe): the run's model is seen with two continuous dimensions
rotated by theta (``imae_kit.rotation``: the moment-matched diagonal posterior of the rotated code, the
decoder undoing the rotation), and for each theta this prints every weighted term's contribution to the
loss and the total, as differences from theta = 0 in nats per image on the same batches and the same
random draws (common random numbers), beside the MIG of the rotated code on the run's ``eval_every``
subset and the total correlation of the rotated pair and of all of z by the evaluation's estimator (the
mixture over the whole subset: much less biased than a minibatch's, though not free of the bias of sharp
posteriors). An objective whose loss is flat over theta while the MIG moves cannot tell the disentangled
basis from an entangled one; one whose loss rises away from the trained basis holds the code there.

    python benchmarks/rotation.py RUN_DIR [--dims auto | I,J | --factors posX,posY] [--angles 0,15,30,45,60,75,90]
                                          [--batches 8] [--threads N] [--no-mig] [--objective RECIPE]
                                          [--posterior moments | entropy]

``--dims auto`` rotates the two most informative dimensions (the largest eq. 5 lower bounds of I(x; z_k)
on the subset); ``--factors A,B`` the top latents (by the MIG at theta = 0) of factors A and B. With the
MIG, every factor's gap is printed per theta too. ``--objective RECIPE`` weighs the same rotated model with
another recipe's terms (its networks must be the run's): e.g. beta-TCVAE's objective on an IMAE model, to
tell the objective from the model. ``--posterior entropy`` rescales the rotated posterior to keep its
entropy (``imae_kit.rotation.RotatedEncoder``). theta = 90 swaps the pair, which the factorial encoder
represents exactly: its row differs from theta = 0 only by the Monte-Carlo draw, a check of the probe and a
measure of its noise.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import attrs
import torch

from imae_kit.metrics.total_correlation import total_correlation
from imae_kit.recipe import load_recipe
from imae_kit.rotation import POSTERIORS, informative_pair, objective_profile, rotated
from imae_kit.runs import RunDir, load_checkpoint
from imae_kit.training import Trainer
from imae_kit.training.monitor import TrainingMonitor


def total_correlations(enc, dims: tuple[int, int], monitor: TrainingMonitor) -> dict[str, float]:
    """TC of the rotated pair and of all of z by the evaluation's estimator: the mixture over the whole
    subset (not a batch's), with the monitor's samples and seed."""
    pair = list(dims)
    return {key: total_correlation(mu, sigma, num_samples=monitor.samples, mixture_size=len(enc.mu),
                                   generator=torch.Generator().manual_seed(monitor.seed)).value
            for key, (mu, sigma) in {"tc_pair": (enc.mu[:, pair], enc.sigma[:, pair]),
                                     "tc_all": (enc.mu, enc.sigma)}.items()}


def main() -> None:
    """Print the loss and the MIG of a run's model over rotations of two latent dimensions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--dims", default="auto", help="'auto' or two dimensions, e.g. 0,3")
    ap.add_argument("--factors", help="rotate the top latents of these two factors (by the MIG), e.g. posX,posY")
    ap.add_argument("--angles", default="0,15,30,45,60,75,90", help="degrees")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-mig", action="store_true", help="skip the MIG of each rotation")
    ap.add_argument("--posterior", choices=POSTERIORS, default="moments",
                    help="the rotated posterior: moment-matched, or rescaled to keep its entropy")
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
    enc = monitor.encode(model)
    base_mig = None if args.no_mig else monitor.mig(enc)
    if args.factors:
        if base_mig is None:
            ap.error("--factors needs the MIG (drop --no-mig)")
        names = args.factors.split(",")
        top = base_mig["z_only"]["top_latent"]
        if len(names) != 2 or any(n not in top for n in names):
            ap.error(f"--factors takes two of {sorted(top)}, e.g. posX,posY; got {args.factors!r}")
        dims = tuple(int(top[n][1:]) for n in names)
        if dims[0] == dims[1]:
            ap.error(f"{names[0]} and {names[1]} share their top latent z{dims[0]}: give --dims instead")
    elif args.dims == "auto":
        dims = informative_pair(enc.mu, enc.sigma)
    else:
        dims = tuple(int(d) for d in args.dims.split(","))
        if len(dims) != 2:
            ap.error(f"--dims takes two dimensions, e.g. 0,3; got {args.dims!r}")
    sigma_ratio = (enc.sigma.double().square().mean(0) / enc.mu.double().var(0)).sqrt()
    print(f"{recipe.name} at step {step}: rotating z{dims[0]} and z{dims[1]} "
          f"(E[sigma^2]^1/2 / sd(mu) = {float(sigma_ratio[dims[0]]):.3f}, {float(sigma_ratio[dims[1]]):.3f}); "
          f"{args.batches} batches of {t.batch_size}, the MIG on {len(monitor.index)} images; "
          f"posterior {args.posterior}")
    g = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(trainer.train_set), generator=g)[:t.batch_size] for _ in range(args.batches)]
    rows = []
    angles = [float(a) for a in args.angles.split(",")]
    for degrees in ([0.0] if 0.0 not in angles else []) + sorted(angles, key=lambda a: a != 0.0):
        m = rotated(model, dims, math.radians(degrees), args.posterior)
        row = {"theta": degrees, **objective_profile(trainer, m, step, batches)}
        if not args.no_mig:  # theta = 0 is the model itself: its encodings and MIG are already there
            turned = enc if degrees == 0.0 else monitor.encode(m)
            mig = base_mig if degrees == 0.0 else monitor.mig(turned)
            row["mig_z"], row["mig_hist"] = mig["z_only"]["score"], mig["histogram"]["z_only"]["score"]
            row["gaps"] = mig["z_only"]["gaps"]
            row.update(total_correlations(turned, dims, monitor))
        rows.append(row)
        print(f"  theta {degrees:5.1f}: loss {row['loss']:.3f}" +
              (f", MIG z {row['mig_z']:.3f}" if row.get("mig_z") is not None else ""), flush=True)
    base = rows[0]
    terms = [k for k in base if k not in ("theta", "loss", "mig_z", "mig_hist", "gaps", "tc_pair", "tc_all")]
    head = ["theta"] + [f"d {k}" for k in terms] + ["d loss"] + ([] if args.no_mig else
                                                                   ["MIG z", "MIG hist", "TC pair", "TC all"])
    print("\nloss contributions, differences from theta = 0 (nats per image; + = the objective likes it less); "
          "MIG and TC (nats; the evaluation's estimator over the subset) of the rotated code")
    print(" | ".join(head))
    for row in rows:
        cells = [f"{row['theta']:.0f}"] + [f"{row[k] - base[k]:+.3f}" for k in terms] + [f"{row['loss'] - base['loss']:+.3f}"]
        if not args.no_mig:
            cells += [f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("mig_z", "mig_hist", "tc_pair", "tc_all")]
        print(" | ".join(cells))
    if not args.no_mig:
        factors = list(base["gaps"])
        print("\nMIG gaps by factor (sampled, on the subset; normalised by H(v))")
        print(" | ".join(["theta"] + factors))
        for row in rows:
            print(" | ".join([f"{row['theta']:.0f}"] + [f"{row['gaps'][f]:.3f}" for f in factors]))
        print("top latent at theta = 0: " + ", ".join(f"{f} {base_mig['z_only']['top_latent'][f]}" for f in factors))
        info = base_mig["mutual_information"]
        h = dict(zip(info["factors"], info["factor_entropies"]))
        print("I(z_k; v) / H(v) at theta = 0, the latents that carry any (> 0.02):")
        print(" | ".join(["latent"] + factors))
        for latent, row in zip(info["latents"], info["nats"]):
            shares = [row[info["factors"].index(f)] / h[f] for f in factors]
            if latent.startswith("z") and max(shares) > 0.02:
                print(" | ".join([latent] + [f"{v:.3f}" for v in shares]))
    print(f"\nat theta = 0: loss {base['loss']:.3f}; " + ", ".join(f"{k} {base[k]:.3f}" for k in terms))


if __name__ == "__main__":
    main()
