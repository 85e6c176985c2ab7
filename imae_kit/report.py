"""The report of an evaluation, from its eval.json dict: the headline table, report.md, and the files.

``headline`` picks the numbers a table shows (the CLI, sweeps and comparisons print it); ``report_markdown``
is report.md; ``write_report`` writes eval.json and report.md into a run directory, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imae_kit.runs import EVAL_FILE, REPORT_FILE, atomic_write_text


def markdown_cell(text: Any) -> str:
    """Text for a Markdown table cell: a bar (the | of H(y|x)) would end the cell, so it is escaped."""
    return str(text).replace("|", "\\|")


def write_report(out_dir: str | Path, evaluation: dict[str, Any]) -> None:
    """Write ``evaluation`` as out_dir/eval.json and its ``report_markdown`` as out_dir/report.md."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / EVAL_FILE, json.dumps(evaluation, indent=2) + "\n")
    atomic_write_text(out_dir / REPORT_FILE, report_markdown(evaluation))


def headline(evaluation: dict[str, Any]) -> list[tuple[str, float | str]]:
    """The headline numbers of an eval.json dict as (name, value) rows, in a fixed order; absent ones left out."""
    rows: list[tuple[str, float | str]] = []
    acc = evaluation.get("accuracy")
    if acc:
        rows += [("accuracy of y (best matching)", acc["accuracy"]), ("NMI(y; label)", acc["nmi"])]
    d = evaluation.get("discrete") or {}
    if d:
        rows += [("I(x;y) nats", d["mutual_information"]), ("H(y) nats", d["entropy"]),
                 ("H(y|x) nats", d["conditional_entropy"])]
    c = evaluation.get("continuous") or {}
    if c:
        rows += [("I(x;z) nats (sum over k of I(x;z_k))", c["mutual_information_sum"]),
                 ("I(x;z) nats (joint)", c["mutual_information_joint"])]
    tc = evaluation.get("total_correlation") or {}
    if tc:
        rows.append(("TC(z) nats", tc["value"]))
    r = evaluation.get("reconstruction") or {}
    if r:
        rows += [("reconstruction NLL nats/image", r["nll_sampled"]), ("KL(p(z|x)||r(z)) nats", r["kl_z"]),
                 ("KL(p(y|x)||r(y)) nats", r["kl_y"])]
    m = evaluation.get("mig")
    if m:
        rows.append(("MIG z (sampled, Chen et al.)", m["z_only"]["score"]))
        if m.get("with_y"):
            rows.append(("MIG z and y (sampled)", m["with_y"]["score"]))
        rows.append((f"MIG z (histogram, {m['histogram']['bins']} bins)", m["histogram"]["z_only"]["score"]))
        if m["histogram"].get("with_y"):
            rows.append(("MIG z and y (histogram)", m["histogram"]["with_y"]["score"]))
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
    c = ev["continuous"]
    lines += ["", "## Continuous dimensions (sorted by I(x;z_k))", "",
              "I(x;z_k) is a Monte-Carlo estimate over the aggregate posterior of "
              f"{c['mixture_size']} evaluation points with {c['samples']} samples; the bounds are PAPER.md eq. 5 "
              "(lower) and eq. 4 (upper). All in nats.", "",
              "| z_k | I(x;z_k) | lower (eq. 5) | upper (eq. 4) | E[sigma_k^2] | Var[mu_k] |",
              "|---|---:|---:|---:|---:|---:|"]
    for i in c["order"]:
        d = c["dimensions"][i]
        lines.append(f"| z{i} | {d['mutual_information']:.3f} | {d['lower_bound']:.3f} | {d['upper_bound']:.3f} | "
                     f"{d['mean_posterior_variance']:.3g} | {d['variance_of_means']:.3g} |")
    m = ev.get("mig")
    if m:
        lines += ["", "## Disentanglement (MIG)", "",
                  f"Over {m['points']} points of the {m['split']} split. Sampled: Chen et al.'s estimator, "
                  f"{m['samples']} samples of q(z|x), each gap normalised by H(v_j). Histogram: "
                  f"{m['histogram']['bins']} equal-width bins of the means, as disentanglement_lib and disent.", "",
                  "| factor v_j | H(v_j) | gap, z only | top, z only | gap, z and y | top, z and y | "
                  "histogram gap, z only | histogram gap, z and y |",
                  "|---|---:|---:|---|---:|---|---:|---:|"]
        with_y, hist = m.get("with_y") or {}, m["histogram"]
        entropies = dict(zip(m["mutual_information"]["factors"], m["mutual_information"]["factor_entropies"]))
        for f in m["mutual_information"]["factors"]:
            cells = [f, _fmt(entropies[f]),
                     _fmt(m["z_only"]["gaps"].get(f, "-")), m["z_only"]["top_latent"].get(f, "-"),
                     _fmt(with_y.get("gaps", {}).get(f, "-")), with_y.get("top_latent", {}).get(f, "-"),
                     _fmt(hist["z_only"]["gaps"].get(f, "-")),
                     _fmt((hist.get("with_y") or {}).get("gaps", {}).get(f, "-"))]
            lines.append("| " + " | ".join(cells) + " |")
        if m.get("excluded_from_z_only"):
            lines.append("")
            lines.append(f"The z-only MIG leaves out {', '.join(m['excluded_from_z_only'])} (the class label, "
                         "which y is meant to carry), as PAPER.md Figure 5; the with-y MIG counts it (Figure 7).")
    figs = ev.get("figures") or {}
    if figs:
        lines += ["", "## Figures", ""]
        captions = {
            "traversals": "Latent traversals: one panel per learnt category, one row per z_k (most informative "
                          "first), starting from the most confident real image (left column)",
            "prototypes": "Category prototypes: decoder(y, mean z of category y), above the most confident example",
            "reconstructions": "Reconstructions below their inputs",
            "information": "Per-dimension information (PAPER.md Figure 2(a))",
            "confusion": "Confusion of learnt categories and labels",
            "mig_matrix": "I(latent; factor) / H(factor), sampled and histogram estimators",
            "training_curves": "Training curves: loss and every term's raw value",
        }
        for key, rel in figs.items():
            lines += [f"### {captions.get(key, key)}", "", f"![{key}]({rel})", ""]
    lines += ["## Timings", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in t.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(ev.get("settings", {}), indent=2), "```", ""]
    return "\n".join(lines)
