"""Result quality of a recipe over seeds: medians and spreads of accuracy, MIG, NLL and the other headline numbers.

Trains and evaluates RECIPE once per seed (``train.seed = s``) into OUT/seed-S (a finished seed is read back,
an interrupted one resumed, so the same command continues), then prints, for each headline number, the
median over the seeds, the smallest and the largest value, and the training and evaluation seconds.

    python benchmarks/quality.py recipes/imae_dsprites.toml [--seeds 0,1,2] [--out runs/quality/NAME]
                                 [--set PATH=VALUE ...] [--steps N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from imae_kit.denormals import flush_denormals
from imae_kit.errors import ImaeKitError
from imae_kit.recipe import load_recipe
from imae_kit.report import headline
from imae_kit.runs import EVAL_FILE, RunDir
from imae_kit.training import evaluate_run, run


def one_seed(recipe: str, seed: int, out: Path, overrides: list[str], steps: int | None) -> dict:
    """The evaluation of ``recipe`` at ``seed``: trained into ``out`` (or continued, or read back)."""
    sets = (*overrides, f"train.seed={seed}")
    if (out / EVAL_FILE).is_file():
        return RunDir.open(out).read_json(EVAL_FILE)
    if (out / "recipe.toml").is_file():
        outcome = run(recipe, overrides=sets, steps=steps, resume=str(out), progress=False)
        if outcome.evaluation is None and outcome.train.status == "completed":
            return evaluate_run(RunDir.open(out), progress=False)
        if outcome.evaluation is None:
            raise ImaeKitError(f"{out}: {outcome.train.status}")
        return outcome.evaluation
    outcome = run(recipe, overrides=sets, steps=steps, out=str(out), progress=False)
    if outcome.evaluation is None:
        raise ImaeKitError(f"{out}: {outcome.train.status}")
    return outcome.evaluation


def main() -> None:
    """Train every seed and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    flush_denormals()  # as the imae-kit command does, before torch's threads exist: the same numbers as `imae-kit run`
    if args.threads:
        torch.set_num_threads(args.threads)
    name = load_recipe(args.recipe, args.overrides, steps=args.steps).name
    base = Path(args.out or f"runs/quality/{name}")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[float]] = {}
    for seed in seeds:
        ev = one_seed(args.recipe, seed, base / f"seed-{seed}", list(args.overrides), args.steps)
        numbers = {k: v for k, v in headline(ev) if isinstance(v, (int, float))}
        numbers["train seconds"] = ev.get("train_seconds") or float("nan")
        numbers["evaluation seconds"] = (ev.get("timings") or {}).get("total", float("nan"))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()), flush=True)
        for k, v in numbers.items():
            rows.setdefault(k, []).append(float(v))
    print(f"\n{name} over seeds {seeds} ({base})")
    print(f"{'measure':<40} {'median':>10} {'min':>10} {'max':>10}")
    for k, values in rows.items():
        print(f"{k:<40} {statistics.median(values):>10.4g} {min(values):>10.4g} {max(values):>10.4g}")


if __name__ == "__main__":
    main()
