"""Recipes: TOML files that name the data, the model, the weighted objective terms and training.

    load.py         read TOML -> ``--set`` overrides -> ``${vars}`` -> validate (load_recipe, parse_recipe)
    spec.py         the frozen section classes (Recipe, TrainSpec, ...), holding the entries built once
    overrides.py    ``--set PATH=VALUE``
    expressions.py  ``${...}`` arithmetic over [vars]; the 64-bit integer range
    validate.py     sections and registered entries into the spec classes (params.py fields)
    places.py       where a mistake is (file, section, line) for every RecipeError
    toml.py         the TOML writer of resolved recipes
"""

from imae_kit.recipe.load import load_recipe, parse_recipe
from imae_kit.recipe.overrides import parse_override_value
from imae_kit.recipe.spec import DataSpec, ModelSpec, NetworkSpec, ObjectiveSpec, Recipe, TermSpec, TrainSpec
from imae_kit.recipe.toml import dump_toml
from imae_kit.schedules import Schedule

__all__ = ["DataSpec", "ModelSpec", "NetworkSpec", "ObjectiveSpec", "Recipe", "Schedule", "TermSpec",
           "TrainSpec", "dump_toml", "load_recipe", "parse_override_value", "parse_recipe"]
