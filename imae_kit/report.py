"""The report of an evaluation, from its eval.json dict: the headline table, report.md, and the files.

Both read the metrics' typed results back from eval.json (``imae_kit.metrics.base.read_results``): each
result gives its headline rows, its report.md section and its figures' captions. ``headline`` is the table the
CLI, sweeps and comparisons print; ``report_markdown`` is report.md; ``write_report`` writes eval.json and
report.md into a run directory, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imae_kit.metrics.base import read_results
from imae_kit.runs import EVAL_FILE, REPORT_FILE, atomic_write_text

# captions of the figures the evaluation draws from the model itself (metrics caption their own)
MODEL_FIGURE_CAPTIONS = {
    "traversals": "Latent traversals: one panel per learnt category, one row per z_k (most informative "
                  "first), starting from the most confident real image (left column)",
    "prototypes": "Category prototypes: decoder(y, mean z of category y), above the most confident example",
    "reconstructions": "Reconstructions below their inputs",
    "training_curves": "Training curves: loss and every term's raw value",
}


def markdown_cell(text: Any) -> str:
    """Text for a Markdown table cell: a bar (the | of H(y|x)) would end the cell, so it is escaped."""
    return str(text).replace("|", "\\|")


def write_report(out_dir: str | Path, evaluation: dict[str, Any]) -> None:
    """Write ``evaluation`` as out_dir/eval.json and its ``report_markdown`` as out_dir/report.md."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / EVAL_FILE, json.dumps(evaluation, indent=2) + "\n")
    atomic_write_text(out_dir / REPORT_FILE, report_markdown(evaluation))


def headline(evaluation: dict[str, Any]) -> list[tuple[str, float | str]]:
    """The headline numbers of an eval.json dict as (name, value) rows: each metric's typed result's rows, in the
    order the metrics ran, then the evaluation time; absent ones left out."""
    rows: list[tuple[str, float | str]] = []
    for result in read_results(evaluation).values():
        rows += result.headline()
    t = evaluation.get("timings") or {}
    if "total" in t:
        rows.append(("evaluation seconds", t["total"]))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def report_markdown(ev: dict[str, Any]) -> str:
    """The report.md text of an eval.json dict: headline numbers, tables, figures inline, timings."""
    lines = ["# Evaluation report", ""]
    if ev.get("recipe_line"):
        lines += [f"Recipe: `{ev['recipe_line']}`", ""]
    t = ev.get("timings") or {}
    lines += [f"Data: {ev['data']['description']}; evaluated on {ev['data']['points']} of "
              f"{ev['data']['split_size']} test points.",
              f"Training time: {_seconds(ev.get('train_seconds'))}; evaluation time: {_seconds(t.get('total'))}.",
              "", "## Headline numbers", "", "| measure | value |", "|---|---:|"]
    lines += [f"| {markdown_cell(n)} | {_fmt(v)} |" for n, v in headline(ev)]
    results = read_results(ev)
    for result in results.values():
        section = result.report()
        if section:
            lines += [""] + section
    figs = ev.get("figures") or {}
    if figs:
        lines += ["", "## Figures", ""]
        captions = dict(MODEL_FIGURE_CAPTIONS)
        names = ev.get("metrics") or {}
        for label, result in results.items():
            for request in result.figures(results):
                key = request.name if names.get(label, label) == label else f"{label}_{request.name}"
                captions[key] = request.caption
        for key, rel in figs.items():
            lines += [f"### {captions.get(key, key)}", "", f"![{key}]({rel})", ""]
    lines += ["## Timings", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in t.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(ev.get("settings", {}), indent=2), "```", ""]
    return "\n".join(lines)
