"""Term-by-term comparison of objectives: what each recipe weights in and what each term measured."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import attrs

from imae_kit import registry
from imae_kit.errors import RunError
from imae_kit.recipe import Recipe, load_recipe
from imae_kit.report import headline
from imae_kit.runs import EVAL_FILE, SUMMARY_FILE, RunDir


def term_rows() -> list[dict[str, str]]:
    """One row per registered term: name, sense, first docstring line, params with defaults, module."""
    rows = []
    for name in registry.names("term"):
        cls = registry.get("term", name)
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        params = ", ".join(f"{p}={_short(d)}" for p, _, d in registry.describe_params(cls)) or "-"
        module = cls.__module__
        origin = "built-in" if module.startswith("imae_kit.") else module
        rows.append({"name": name, "sense": cls.sense, "doc": doc[0] if doc else "", "params": params,
                     "module": origin})
    return rows


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


@attrs.frozen
class Comparison:
    """A side-by-side table: ``columns`` names the inputs; rows start with the term label."""

    columns: list[str]
    term_rows: list[list[str]]
    eval_rows: list[list[str]]


def _load(item: str, overrides: Sequence[str]) -> tuple[str, Recipe, RunDir | None]:
    p = Path(item)
    if p.is_dir():
        rd = RunDir.open(p)
        return str(p), load_recipe(rd.recipe_path), rd
    if p.is_file():
        return str(p), load_recipe(p, overrides), None
    raise RunError(f"{item}: neither a recipe file nor a run directory")


def comparison(items: Sequence[str], overrides: Sequence[str] = ()) -> Comparison:
    """Compare recipes and/or run directories term by term (and by evaluation numbers for evaluated runs)."""
    loaded = [_load(item, overrides) for item in items]
    labels: list[str] = []
    for _, recipe, _ in loaded:
        for t in recipe.objective.terms:
            if t.label not in labels:
                labels.append(t.label)
    finals = []
    for _, _, rd in loaded:
        summary = rd.read_json(SUMMARY_FILE) if rd is not None else None
        finals.append((summary or {}).get("terms", {}))
    rows = []
    for label in labels:
        row = [label]
        for (_, recipe, rd), final in zip(loaded, finals):
            spec = next((t for t in recipe.objective.terms if t.label == label), None)
            if spec is None:
                row.append("-")
                continue
            cls = registry.get("term", spec.name)
            sign = "+" if cls.sense == "maximize" else "-"
            weight = "monitor" if spec.weight.always_zero else f"{sign}{spec.weight.describe()}"
            params = ", ".join(f"{k}={_short(v)}" for k, v in spec.params.items())
            cell = weight + (f" [{params}]" if params else "")
            if label in final:
                cell += f"\n= {final[label]['value']:.4g}"
            row.append(cell)
        rows.append(row)
    eval_rows = _eval_rows([rd for _, _, rd in loaded])
    return Comparison(columns=[name for name, _, _ in loaded], term_rows=rows, eval_rows=eval_rows)


def _eval_rows(run_dirs: list[RunDir | None]) -> list[list[str]]:
    evals = [rd.read_json(EVAL_FILE) if rd is not None else None for rd in run_dirs]
    if not any(evals):
        return []
    tables = [dict(headline(e)) if e else {} for e in evals]
    names: list[str] = []
    for t in tables:
        for n in t:
            if n not in names:
                names.append(n)
    rows = []
    for n in names:
        row = [f"eval: {n}"]
        for t in tables:
            v = t.get(n)
            row.append("-" if v is None else (v if isinstance(v, str) else f"{v:.4g}"))
        rows.append(row)
    return rows
