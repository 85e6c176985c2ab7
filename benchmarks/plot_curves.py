"""Draw the ``train.eval_every`` learning curves of several runs side by side, against images seen.

Each RUN is a run directory (its metrics.jsonl, complete or still growing), optionally followed by
``@LABEL``; ``--keys`` are the monitor's numbers to draw, one panel each (``mig_z``, ``mig_with_y``,
``mig_histogram_z``, ``accuracy``, ``mutual_information_y``, ``active_dimensions``, or ``gap:FACTOR`` for
one factor's MIG gap, e.g. ``gap:posX``). The x axis is
images seen (step x the run's batch size), in epochs when ``--epoch N`` gives the training set's size.
Prints each run's curve as a table too.

    python benchmarks/plot_curves.py runs/a@IMAE runs/b@beta-TCVAE --keys mig_z,mig_histogram_z \\
        --epoch 737280 --out docs/results/fig.png
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from imae_kit.figures.plots import read_metrics  # noqa: E402
from plot_runs import split_label, write_figure  # noqa: E402  (benchmarks/, the script's own folder)


def value(record: dict, key: str) -> float | None:
    """A monitor number of one eval record: a top-level key, or ``gap:FACTOR`` from its ``mig_gaps``."""
    if key.startswith("gap:"):
        return (record.get("mig_gaps") or {}).get(key[len("gap:"):])
    return record.get(key)


def curve(run: Path, keys: list[str]) -> tuple[int, list[dict]]:
    """The run's batch size and its eval records [{"step": s, key: value, ...}] in step order."""
    batch = int(tomllib.loads((run / "recipe.toml").read_text())["train"]["batch_size"])
    rows = [{"step": r["step"], **{k: value(r["eval"], k) for k in keys}}
            for r in read_metrics(run / "metrics.jsonl") if isinstance(r.get("eval"), dict)]
    return batch, rows


def main() -> None:
    """Read the runs' curves, print them, draw them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN[@LABEL]")
    ap.add_argument("--keys", default="mig_z,mig_histogram_z,active_dimensions")
    ap.add_argument("--epoch", type=int, help="training-set size: x axis in epochs")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    keys = [k for k in args.keys.split(",") if k]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), dpi=110, squeeze=False)
    for spec in args.runs:
        path, label = split_label(spec)
        run = Path(path)
        if not (run / "metrics.jsonl").is_file():
            raise SystemExit(f"{run}: no metrics.jsonl (is it a run directory?)")
        batch, rows = curve(run, keys)
        if not rows:
            raise SystemExit(f"{run}: no eval_every records (train with --set train.eval_every=N)")
        label = label or run.name
        scale = batch / args.epoch if args.epoch else batch
        print(f"{label} (batch {batch}):")
        print("  step | " + ("epochs" if args.epoch else "images") + " | " + " | ".join(keys))
        for r in rows:
            print(f"  {r['step']} | {r['step'] * scale:.3g} | " +
                  " | ".join("-" if r[k] is None else f"{r[k]:.3f}" for k in keys))
        for ax, key in zip(axes[0], keys):
            pts = [(r["step"] * scale, r[key]) for r in rows if r[key] is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", ms=3, label=label)
    for ax, key in zip(axes[0], keys):
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epochs" if args.epoch else "images seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    write_figure(fig, args.out)


if __name__ == "__main__":
    main()
