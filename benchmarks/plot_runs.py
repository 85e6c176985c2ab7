"""Scatter two numbers of several evaluated runs against each other (e.g. the MIG against the reconstruction NLL).

Each RUN is a run directory with an eval.json, optionally followed by ``@LABEL``; ``--x`` and ``--y`` are
dotted paths into eval.json (``reconstruction.nll_sampled``, ``mig.z_only.score``, ``accuracy.accuracy``).
Runs that share a group (the label's part before ``:``) are drawn in one colour and joined by a line, in the
order given; ``--points`` leaves the line out (seeds of one method, where an order means nothing).
``--median`` draws the runs that share a whole label (``GROUP:POINT``, the seeds of one setting) as one
point at their medians on both axes, with bars over their ranges.

    python benchmarks/plot_runs.py --x reconstruction.nll_sampled --y mig.z_only.score --out fig.png \\
        runs/a@IMAE:beta=1 runs/b@IMAE:beta=4 runs/c@beta-TCVAE:beta=6
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def split_label(spec: str) -> tuple[str, str]:
    """A ``RUN[@LABEL]`` argument as (run path, label); the label is '' where none is given."""
    path, _, label = spec.rpartition("@") if "@" in spec else (spec, "", "")
    return path, label


def lookup(data: dict, dotted: str, required: bool = True) -> float | None:
    """The number at a dotted path of a nested dict; where it is not there (or null), SystemExit naming the
    path, or None when not ``required`` (a number that evaluation did not measure)."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node or node[part] is None:
            if required:
                raise SystemExit(f"{dotted!r} is not in eval.json (stopped at {part!r})")
            return None
        node = node[part]
    return float(node)


def main() -> None:
    """Read the runs, draw, write the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="RUN[@LABEL]")
    ap.add_argument("--x", required=True)
    ap.add_argument("--y", required=True)
    ap.add_argument("--xlabel")
    ap.add_argument("--ylabel")
    ap.add_argument("--title", default="")
    ap.add_argument("--points", action="store_true", help="do not join a group's points by a line")
    ap.add_argument("--median", action="store_true",
                    help="one point per whole label (GROUP:POINT) at the runs' medians, bars over their ranges")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    groups: dict[str, list[tuple[float, float, str]]] = {}
    for spec in args.runs:
        path, label = split_label(spec)
        eval_file = Path(path) / "eval.json"
        if not eval_file.is_file():
            raise SystemExit(f"{path}: no eval.json (evaluate the run first: imae-kit eval {path})")
        data = json.loads(eval_file.read_text())
        label = label or Path(path).name
        group, _, point = label.partition(":")
        groups.setdefault(group, []).append((lookup(data, args.x), lookup(data, args.y), point))
        print(f"{label}: {args.x} = {groups[group][-1][0]:.4g}, {args.y} = {groups[group][-1][1]:.4g}")
    fig, ax = plt.subplots(figsize=(7.2, 3.8), dpi=110)
    for group, points in groups.items():
        spread = None
        if args.median:
            points, spread = medians(points)
            for (x, y, name), (x_lo, x_hi, y_lo, y_hi, n) in zip(points, spread):
                print(f"{group}:{name}: median of {n} run(s): {args.x} = {x:.4g} ({x_lo:.4g}-{x_hi:.4g}), "
                      f"{args.y} = {y:.4g} ({y_lo:.4g}-{y_hi:.4g})")
        xs, ys, names = zip(*points)
        line = ax.plot(xs, ys, "o" if args.points else "o-", label=group)[0]
        if spread:
            ax.errorbar(xs, ys, fmt="none", ecolor=line.get_color(), alpha=0.5, capsize=2,
                        xerr=[[x - s[0] for x, s in zip(xs, spread)], [s[1] - x for x, s in zip(xs, spread)]],
                        yerr=[[y - s[2] for y, s in zip(ys, spread)], [s[3] - y for y, s in zip(ys, spread)]])
        for x, y, name in points:
            if name:
                ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(args.xlabel or args.x)
    ax.set_ylabel(args.ylabel or args.y)
    ax.set_title(args.title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the axes: no point hidden
    write_figure(fig, args.out)


def medians(points: list[tuple[float, float, str]]):
    """The points sharing a name reduced to one at their medians, in first-seen order, with (x min, x max,
    y min, y max, count) for each."""
    by_name: dict[str, list[tuple[float, float]]] = {}
    for x, y, name in points:
        by_name.setdefault(name, []).append((x, y))
    out, spread = [], []
    for name, xy in by_name.items():
        xs, ys = [p[0] for p in xy], [p[1] for p in xy]
        out.append((statistics.median(xs), statistics.median(ys), name))
        spread.append((min(xs), max(xs), min(ys), max(ys), len(xy)))
    return out, spread


def write_figure(fig, out: str) -> None:
    """Lay the figure out, write it to ``out`` (creating its folder) and say where."""
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"figure: {out}")


if __name__ == "__main__":
    main()
