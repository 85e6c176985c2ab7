"""Loading a recipe: read TOML -> apply ``--set`` overrides -> substitute ``${...}`` from [vars] -> validate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from imae_kit.errors import RecipeError
from imae_kit.recipe.expressions import INT64_MAX, check_integers, substitute_vars
from imae_kit.recipe.overrides import apply_overrides
from imae_kit.recipe.places import RecipeText
from imae_kit.recipe.spec import Recipe
from imae_kit.recipe.validate import validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_recipe(path: str | Path, overrides: Iterable[str] = (), *, steps: int | None = None) -> Recipe:
    """Read, override, substitute and validate a recipe file.

    ``steps`` replaces the training budget (``train.steps = steps``, ``train.epochs`` dropped)."""
    p = Path(path)
    if not p.is_file():
        hint = " (recipes are .toml files)" if p.suffix != ".toml" else ""
        raise RecipeError(f"recipe {str(path)!r} not found{hint}; check the path")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the recipe as UTF-8") from exc
    return parse_recipe(text, source=str(path), overrides=overrides, steps=steps)


def parse_recipe(text: str, *, source: str = "<recipe>", overrides: Iterable[str] = (),
                 steps: int | None = None) -> Recipe:
    """Validate recipe text (the TOML of a recipe file); ``source`` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: TOML syntax error: {exc}; fix the line it names") from exc
    ctx = RecipeText(source, text)
    check_integers(raw, ctx, "")
    raw = apply_overrides(raw, list(overrides), ctx)
    check_integers(raw, ctx, "--set: ")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= INT64_MAX:
            raise RecipeError(f"{source}: --steps must be a positive integer, got {steps!r}")
        train = raw.get("train")
        if isinstance(train, dict):
            train = dict(train)
            train.pop("epochs", None)
            train["steps"] = steps
            raw = {**raw, "train": train}
    return validate(substitute_vars(raw, ctx), ctx)
