"""Resuming a run: the differences between the recipe a run directory keeps and the one given now."""

from __future__ import annotations

from typing import Any

from imae_kit.params import is_number
from imae_kit.recipe import Recipe, dump_toml, parse_recipe


def resolved_recipe_text(recipe: Recipe) -> str:
    """The recipe after ${vars} and overrides, as TOML (what the run directory keeps)."""
    return dump_toml(recipe.resolved)


_ABSENT = "(absent)"


def recipe_changes(saved_text: str, recipe: Recipe, source: str) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, new value) wherever ``recipe`` differs from the saved resolved recipe."""
    saved = parse_recipe(saved_text, source=source).resolved
    return _diff(dict(saved), dict(recipe.resolved), "")


def check_same_recipe(saved_text: str, recipe: Recipe, source: str) -> list[str]:
    """The dotted keys where ``recipe`` differs from the saved resolved recipe (empty if the same)."""
    return [key for key, _, _ in recipe_changes(saved_text, recipe, source)]


def _diff(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) | set(b)):
            if k == "vars" and not prefix:
                continue  # vars are already substituted into the values that matter
            out += _diff(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{prefix}.{k}" if prefix else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        names = _entry_names(a)
        out = []
        for i, (x, y) in enumerate(zip(a, b)):  # terms are named by label, as --set names them
            out += _diff(x, y, f"{prefix}.{names[i] if names and names == _entry_names(b) else i}")
        return out
    return [] if a == b and type(a) is type(b) or (is_number(a) and is_number(b) and a == b) else [(prefix, a, b)]


def _entry_names(entries: list) -> list[str] | None:
    """Each table's label (or name) when every entry has a distinct one, else None."""
    names = [e.get("label", e.get("name")) if isinstance(e, dict) else None for e in entries]
    usable = all(isinstance(n, str) and n and "." not in n and not n.isdigit() for n in names)
    return names if usable and len(set(names)) == len(names) else None


def allowed_change(key: str, allow: tuple[str, ...]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allow)


def show_change(key: str, old: Any, new: Any) -> str:
    def show(v: Any) -> str:
        text = v if v is _ABSENT else repr(v)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"{key} ({show(old)} -> {show(new)})"
