"""A sweep's grid: the swept overrides, their points in order, shards, and the spec in sweep.json."""

from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

import attrs

from imae_kit.errors import RecipeError


SWEEP_FORMAT = 1
SEED_PATH = "train.seed"


@attrs.frozen
class GridAxis:
    """One swept override: a recipe path and the values (TOML text, as ``--set`` takes them) it runs through."""

    path: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str, option: str = "--grid") -> "GridAxis":
        """``PATH=V1,V2,...`` (commas inside brackets or quotes belong to a value: ``hidden=[64,64],[128]``);
        ``option`` names the command-line option in the errors (``collect --only`` takes the same form)."""
        path, sep, text = spec.partition("=")
        path = path.strip()
        if not sep or not path:
            raise RecipeError(f"{option} {spec!r}: expected PATH=V1,V2,..., e.g. {option} vars.beta=1,2,4")
        values = tuple(v.strip() for v in split_top_level(text))
        if not values or any(v == "" for v in values):
            raise RecipeError(f"{option} {spec!r}: empty value in the list; e.g. {option} {path}=1,2,4")
        if len(set(values)) != len(values):
            raise RecipeError(f"{option} {spec!r}: a value is listed twice")
        return cls(path=path, values=values)


def split_top_level(text: str) -> list[str]:
    """Split ``text`` at commas that are outside brackets, braces and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


@attrs.frozen
class SweepPoint:
    """One grid point: its position, its (path, value) assignment and its run directory's name."""

    index: int
    assignment: tuple[tuple[str, str], ...]

    @property
    def overrides(self) -> tuple[str, ...]:
        """The point's ``--set`` overrides."""
        return tuple(f"{path}={value}" for path, value in self.assignment)

    @property
    def name(self) -> str:
        """``NNN-key=value-...``, safe as a directory name (the last part of each path is the key)."""
        parts = [f"{path.split('.')[-1]}={value}" for path, value in self.assignment]
        slug = re.sub(r"[^A-Za-z0-9=.+_-]+", "_", "-".join(parts))[:80]
        return f"{self.index:03d}-{slug}" if slug else f"{self.index:03d}"


def grid_points(axes: Sequence[GridAxis]) -> list[SweepPoint]:
    """Every combination of the axes' values, the first axis varying slowest."""
    combos = itertools.product(*[[(a.path, v) for v in a.values] for a in axes])
    return [SweepPoint(i, tuple(c)) for i, c in enumerate(combos)]


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) -> (I, N): the shard of points i with i % N == I - 1."""
    left, sep, right = text.partition("/")
    try:
        index, count = int(left), int(right)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise RecipeError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. --shard 2/8 (the points i "
                          f"with i % 8 == 1); in a SLURM array: --shard $((SLURM_ARRAY_TASK_ID + 1))/N")
    return index, count


def in_shard(point: "SweepPoint", shard: tuple[int, int] | None) -> bool:
    """Whether ``point`` belongs to ``shard`` = (I, N) (every point when None)."""
    return shard is None or point.index % shard[1] == shard[0] - 1


@attrs.frozen
class SweepSpec:
    """What defines a sweep: the recipe file, the fixed overrides, the grid, the budget and evaluation."""

    recipe: str
    fixed: tuple[str, ...]
    grid: tuple[GridAxis, ...]
    steps: int | None
    evaluate: bool
    # the SHA-256 of the recipe file's text when the sweep began (None in sweeps from before it was kept):
    # every point must train from the same text, so a file edited mid-sweep is refused, not mixed in
    recipe_sha256: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The form stored in sweep.json."""
        data = {"format": SWEEP_FORMAT, "recipe": self.recipe, "fixed": list(self.fixed),
                "grid": [{"path": a.path, "values": list(a.values)} for a in self.grid],
                "steps": self.steps, "evaluate": self.evaluate}
        if self.recipe_sha256 is not None:
            data["recipe_sha256"] = self.recipe_sha256
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SweepSpec":
        """Read sweep.json's form back."""
        return cls(recipe=data["recipe"], fixed=tuple(data["fixed"]),
                   grid=tuple(GridAxis(a["path"], tuple(a["values"])) for a in data["grid"]),
                   steps=data["steps"], evaluate=bool(data["evaluate"]), recipe_sha256=data.get("recipe_sha256"))

    def differences(self, other: "SweepSpec") -> list[str]:
        """Human-readable fields in which ``other`` differs from this spec (the recipe's digest aside: see
        ``Sweep.check_recipe_unchanged``)."""
        mine, theirs = self.as_json(), other.as_json()
        return [f"{k}: {mine[k]!r} here, {theirs[k]!r} asked for" for k in mine
                if k != "recipe_sha256" and mine[k] != theirs.get(k)]
