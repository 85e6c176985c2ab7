"""Unsupervised model selection among seeds: how well does a number measured without labels (the evaluation's
TC, say) pick, among k runs of one setting, the run with the best score (MIG z)?

Each RUN is a run directory with an eval.json or a sweep directory, optionally followed by ``@LABEL``, as for
``run_table.py``; runs with the same label are one series (the seeds of one setting). Per series it prints
Spearman's rho between the criterion and the score with its exact permutation p (every ordering of the runs,
up to 8 runs; sampled beyond), and over every k-subset of the series' runs (k restarts of the same recipe): the
score of the run the criterion picks, against the subset's median (what one run gives, typically) and its
best (an oracle that reads the labels). Then the run the criterion picks among all of the series' runs.

``--by-from RUN[@LABEL]`` reads the criterion from other runs, matched by label and seed: the same seeds
stopped early (``imae-kit sweep ... --steps 800``), to ask whether the criterion after a short start picks the
seed that ends best. ``--by-step N`` reads it instead from the ``train.eval_every`` record at step N of
those runs' metrics.jsonl (the fixed subset's numbers: ``TC`` is its ``total_correlation``).

    python benchmarks/select_runs.py runs/sweeps/imae_dsprites_s17_b8@b8 runs/sweeps/imae_dsprites_s17_b8_s34@b8 \\
        --by TC --score "MIG z" --k 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from run_table import SUMMARY, expand, read_run  # (benchmarks/, the script's own folder)

# the eval_every records' names of the numbers run_table.py reads from eval.json
MONITOR_KEYS = {"MIG z": "mig_z", "MIG z,y": "mig_with_y", "TC": "total_correlation", "acc(y)": "accuracy",
                "I(x;y)": "mutual_information_y"}
EXACT_UP_TO = 8  # runs; 8! = 40,320 orderings
SAMPLED_ORDERINGS = 40_000


def spearman_test(xs: list[float], ys: list[float], seed: int = 0) -> tuple[float, float]:
    """Spearman's rho (Pearson's correlation of the ranks; ties share their mean rank) and its two-sided p: the
    share of orderings of ys whose |rho| reaches the observed one, exact up to EXACT_UP_TO runs, else from
    SAMPLED_ORDERINGS random orderings. Reordering ys keeps its ranks' spread, so only the dot product of the
    centred ranks changes from one ordering to the next: the ranks are computed once."""
    rx, ry = rankdata(xs), rankdata(ys)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if not scale:
        return float("nan"), float("nan")
    if len(ry) <= EXACT_UP_TO:
        orderings = np.array(list(itertools.permutations(ry)))
    else:
        rng = np.random.default_rng(seed)
        orderings = np.array([rng.permutation(ry) for _ in range(SAMPLED_ORDERINGS)])
    observed = float(rx @ ry)
    reached = np.abs(orderings @ rx) >= abs(observed) - 1e-9 * scale
    return observed / scale, float(reached.mean())


def monitored(run: Path, name: str, step: int) -> float | None:
    """The number ``name`` of the run's eval_every record at ``step`` (None when the run has no such record)."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("step") == step and isinstance(record.get("eval"), dict):
            return record["eval"].get(MONITOR_KEYS[name])
    return None


def pick(members: list[dict], by: str, prefer: str) -> dict:
    """The run the criterion picks: the lowest (``prefer="low"``) or highest value of ``by``."""
    choose = min if prefer == "low" else max
    return choose(members, key=lambda m: m["numbers"][by])


def subsets(members: list[dict], k: int, by: str, score: str, prefer: str) -> dict:
    """Over every k-subset: the picked run's score, the subset's median score and its best score."""
    picked, medians, best, hits = [], [], [], 0
    for subset in itertools.combinations(members, k):
        scores = [m["numbers"][score] for m in subset]
        chosen = pick(list(subset), by, prefer)["numbers"][score]
        picked.append(chosen)
        medians.append(statistics.median(scores))
        best.append(max(scores))
        hits += chosen == max(scores)
    return {"n": len(picked), "picked": picked, "medians": medians, "best": best, "hits": hits}


def main() -> None:
    names = [name for name, _, _ in SUMMARY]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN[@LABEL]")
    ap.add_argument("--by", default="TC", choices=names, help="the criterion, read without labels (default TC)")
    ap.add_argument("--prefer", default="low", choices=("low", "high"), help="which end of --by wins (default low)")
    ap.add_argument("--score", default="MIG z", choices=names, help="what the pick is judged by (default 'MIG z')")
    ap.add_argument("--k", type=int, default=3, help="restarts per selection (default 3)")
    ap.add_argument("--by-from", action="append", default=[], metavar="RUN[@LABEL]",
                    help="read --by from these runs (matched by label and seed), e.g. the same seeds stopped early")
    ap.add_argument("--by-step", type=int, metavar="N",
                    help="read --by from the eval_every record at step N (of the --by-from runs where given)")
    args = ap.parse_args()
    if args.k < 2:
        ap.error(f"--k {args.k}: a selection needs at least 2 runs to choose from")
    if args.by_step is not None and args.by not in MONITOR_KEYS:
        ap.error(f"--by-step: {args.by!r} is not in the eval_every records (there: {', '.join(MONITOR_KEYS)})")

    def criterion(run: Path, row: dict) -> float | None:
        return row["numbers"][args.by] if args.by_step is None else monitored(run, args.by, args.by_step)

    early: dict[tuple[str, object], float | None] = {}
    for spec in args.by_from:
        for run, label in expand(spec):
            row = read_run(run, label, active_nats=0.1)
            if (row["label"], row["seed"]) in early:
                raise SystemExit(f"--by-from: two runs of series {row['label']!r} with seed {row['seed']} "
                                 f"(the second: {run}); give each seed once")
            early[row["label"], row["seed"]] = criterion(run, row)

    series: dict[str, list[dict]] = {}
    for spec in args.runs:
        for run, label in expand(spec):
            row = read_run(run, label, active_nats=0.1)
            if args.by_from:
                if (row["label"], row["seed"]) not in early:
                    print(f"skipped {run}: no --by-from run of series {row['label']!r} with seed {row['seed']}")
                    continue
                row["numbers"][args.by] = early[row["label"], row["seed"]]
            else:
                row["numbers"][args.by] = criterion(run, row)
            missing = [name for name in (args.by, args.score) if row["numbers"][name] is None]
            if missing:
                print(f"skipped {run}: no {' and no '.join(missing)} measured for it")
                continue
            series.setdefault(row["label"], []).append(row)

    source = f" at step {args.by_step} (eval_every subset)" if args.by_step is not None else ""
    source += " (read from the --by-from runs of the same seed)" if args.by_from else ""
    print(f"Pick the run with the {args.prefer}est {args.by}{source} among k = {args.k}; judged by {args.score}.\n")
    print(f"| series | runs | rho({args.by}, {args.score}) | p | {args.k}-subsets | picked: median (mean) | "
          f"one run: median of subset medians | oracle: median of subset bests | picked the best |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    not_worse = total = 0
    for label, members in series.items():
        xs = [m["numbers"][args.by] for m in members]
        ys = [m["numbers"][args.score] for m in members]
        rho, p = spearman_test(xs, ys) if len(members) >= 3 else (float("nan"), float("nan"))
        if len(members) < args.k:
            print(f"| {label} | {len(members)} | {rho:.2f} | {p:.3g} | 0 | - | - | - | - |")
            continue
        s = subsets(members, args.k, args.by, args.score, args.prefer)
        not_worse += sum(c >= m for c, m in zip(s["picked"], s["medians"]))
        total += s["n"]
        print(f"| {label} | {len(members)} | {rho:.2f} | {p:.3g} | {s['n']} | "
              f"{statistics.median(s['picked']):.3f} ({statistics.fmean(s['picked']):.3f}) | "
              f"{statistics.median(s['medians']):.3f} | {statistics.median(s['best']):.3f} | {s['hits']} of {s['n']} |")
    if total:
        print(f"\nOver all series: the pick scored at least its subset's median in {not_worse} of {total} subsets.")

    print(f"\nPicked among all of each series' runs ({args.prefer}est {args.by}):")
    for label, members in series.items():
        chosen = pick(members, args.by, args.prefer)
        print(f"  {label}: seed {chosen['seed']}, {args.by} {chosen['numbers'][args.by]:.4g}, "
              f"{args.score} {chosen['numbers'][args.score]:.4g}  ({chosen['run']})")


if __name__ == "__main__":
    main()
