"""Tabulate evaluated runs one row each (MIG, its gaps by factor, NLL, TC, accuracy, active dimensions), then
per series the median and range, and exact Mann-Whitney tests between series.

Each RUN is a run directory with an eval.json, optionally followed by ``@LABEL``; a sweep directory stands
for every evaluated run under its ``runs/``. Runs with the same label (the recipe's name where none is
given) form one series: seeds of one method, say. ``--versus A,B`` tests series B against series A on every
summarised number (two-sided, exact: ``scipy.stats.mannwhitneyu(..., method="exact")``).

    python benchmarks/run_table.py runs/sweeps/imae_dsprites_b4@IMAE runs/sweeps/beta_tcvae_dsprites_b4@beta-TCVAE \\
        --versus IMAE,beta-TCVAE
"""

from __future__ import annotations

import argparse
import json
import statistics
import tomllib
from pathlib import Path

from scipy.stats import mannwhitneyu

from plot_runs import lookup, split_label  # (benchmarks/, the script's own folder)

# (column, dotted path in eval.json, format): the numbers summarised per series
SUMMARY = (("MIG z", "mig.z_only.score", "{:.3f}"), ("MIG z,y", "mig.with_y.score", "{:.3f}"),
           ("NLL", "reconstruction.nll_sampled", "{:.1f}"), ("TC", "total_correlation.value", "{:.2f}"),
           ("acc(y)", "accuracy.accuracy", "{:.3f}"), ("I(x;y)", "discrete.mutual_information", "{:.2f}"))


def expand(spec: str) -> list[tuple[Path, str]]:
    """A ``RUN[@LABEL]`` argument as (run directory, label) pairs; a sweep directory gives all its runs."""
    path, label = split_label(spec)
    root = Path(path)
    if (root / "eval.json").is_file():
        return [(root, label)]
    runs = sorted(p.parent for p in root.glob("runs/*/eval.json"))
    if not runs:
        raise SystemExit(f"{path}: neither a run with an eval.json nor a sweep directory with evaluated runs "
                         f"(evaluate a run with: imae-kit eval RUN)")
    return [(run, label) for run in runs]


def read_run(run: Path, label: str, active_nats: float) -> dict:
    """One row: the run's label, seed, summarised numbers, MIG gaps by factor and active dimensions."""
    data = json.loads((run / "eval.json").read_text())
    recipe = tomllib.loads((run / "recipe.toml").read_text()) if (run / "recipe.toml").is_file() else {}
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    dims = (data.get("continuous") or {}).get("dimensions") or []
    active = sorted((d["mutual_information"] for d in dims if d["mutual_information"] > active_nats), reverse=True)
    return {
        "label": label or info.get("name") or recipe.get("name") or run.name,
        "run": str(run),
        "seed": (recipe.get("train") or {}).get("seed", "?"),
        "numbers": {name: lookup(data, path, required=False) for name, path, _ in SUMMARY},
        "gaps": ((data.get("mig") or {}).get("z_only") or {}).get("gaps") or {},
        "active": active,
        "train_s": data.get("train_seconds"),
        "eval_s": (data.get("timings") or {}).get("total"),
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def main() -> None:
    """Read the runs; print the per-run table, the series' medians and the tests asked for."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN[@LABEL]")
    ap.add_argument("--active", type=float, default=0.1, metavar="NATS",
                    help="a dimension is active where I(x;z_k) exceeds this (default 0.1 nats)")
    ap.add_argument("--versus", action="append", default=[], metavar="A,B",
                    help="exact two-sided Mann-Whitney test of series B against A (repeatable)")
    args = ap.parse_args()
    rows = [read_run(run, label, args.active) for spec in args.runs for run, label in expand(spec)]
    factors = list(dict.fromkeys(f for row in rows for f in row["gaps"]))
    head = ["series", "seed", *(name for name, _, _ in SUMMARY), f"gaps {' / '.join(factors)}",
            "active z_k (nats)", "train s", "eval s"]
    print("| " + " | ".join(head) + " |")
    print("|---|---:|" + "---:|" * len(SUMMARY) + "---|---|---:|---:|")
    for row in rows:
        cells = [row["label"], str(row["seed"]),
                 *(fmt(row["numbers"][name], spec) for name, _, spec in SUMMARY),
                 " / ".join(fmt(row["gaps"].get(f), "{:.2f}") for f in factors),
                 ", ".join(f"{v:.2f}" for v in row["active"]) or "none",
                 fmt(row["train_s"], "{:.0f}"), fmt(row["eval_s"], "{:.0f}")]
        print("| " + " | ".join(cells) + " |")

    series: dict[str, list[dict]] = {}
    for row in rows:
        series.setdefault(row["label"], []).append(row)
    print()
    print("| series | runs | " + " | ".join(f"{name} median (range)" for name, _, _ in SUMMARY) + " | active (median) |")
    print("|---|---:|" + "---|" * len(SUMMARY) + "---:|")
    for label, members in series.items():
        cells = []
        for name, _, spec in SUMMARY:
            values = [m["numbers"][name] for m in members if m["numbers"][name] is not None]
            cells.append("-" if not values else
                         f"{spec.format(statistics.median(values))} ({spec.format(min(values))}-{spec.format(max(values))})")
        active = statistics.median(len(m["active"]) for m in members)
        print(f"| {label} | {len(members)} | " + " | ".join(cells) + f" | {active:g} |")

    for pair in args.versus:
        a, _, b = pair.partition(",")
        missing = [s for s in (a, b) if s not in series]
        if missing:
            raise SystemExit(f"--versus {pair}: no series named {', '.join(map(repr, missing))} "
                             f"(the series are: {', '.join(map(repr, series))})")
        print(f"\n{b} against {a} (exact two-sided Mann-Whitney; U counts the pairs where {b}'s number is larger):")
        for name, _, _ in SUMMARY:
            xs = [m["numbers"][name] for m in series[b] if m["numbers"][name] is not None]
            ys = [m["numbers"][name] for m in series[a] if m["numbers"][name] is not None]
            if not xs or not ys:
                continue
            test = mannwhitneyu(xs, ys, alternative="two-sided", method="exact")
            print(f"  {name}: U = {test.statistic:g} of {len(xs) * len(ys)}, p = {test.pvalue:.3g}")


if __name__ == "__main__":
    main()
