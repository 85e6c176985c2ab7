"""``--set PATH=VALUE``: overrides applied to a recipe's TOML tree before ``${vars}`` are substituted."""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

from imae_kit.errors import RecipeError
from imae_kit.recipe.places import RecipeText

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def apply_overrides(raw: dict, overrides: list[str], ctx: RecipeText) -> dict:
    """Apply ``path=value`` overrides (``--set``); values are TOML (``4``, ``"adam"``, ``[1, 2]``) or bare strings.

    A path is dotted keys; inside ``objective.terms`` a term is addressed by its label or name
    (``objective.terms.discrete_mi.weight=4``) or by its index (``objective.terms.1.weight=4``).
    """
    if not overrides:
        return raw
    out = _deepcopy(raw)
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise RecipeError(f"{ctx.source}: --set {item!r}: expected PATH=VALUE, e.g. --set vars.beta=4")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise RecipeError(f"{ctx.source}: --set {item!r}: not valid UTF-8 text; retype it") from None
        path, _, text = item.partition("=")
        keys = [k.strip() for k in path.strip().split(".") if k.strip()]
        if not keys:
            raise RecipeError(f"{ctx.source}: --set {item!r}: empty path; e.g. --set train.lr=1e-4")
        value = parse_override_value(text.strip())
        node: Any = out
        try:
            for i, key in enumerate(keys[:-1]):
                node = _descend(node, key, keys[: i + 1], item)
            last = keys[-1]
            if isinstance(node, list):
                node[_list_index(node, last, item)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                raise RecipeError(f"--set {item!r}: {'.'.join(keys[:-1])} is a value, not a table")
        except RecipeError as exc:
            raise RecipeError(f"{ctx.source}: {exc}") from None
    return out


def parse_override_value(text: str) -> Any:
    """A ``--set`` value as the recipe reads it: a TOML value (``4``, ``"adam"``, ``[1, 2]``) or the bare text."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if list(parsed) == ["v"] else text


def _descend(node: Any, key: str, sofar: list[str], item: str) -> Any:
    """One step down the override's path, creating a missing table."""
    if isinstance(node, list):
        return node[_list_index(node, key, item)]
    if not isinstance(node, dict):
        raise RecipeError(f"--set {item!r}: {'.'.join(sofar[:-1])} is a value, not a table")
    if key not in node:
        node[key] = {}
    return node[key]


def _list_index(node: list, key: str, item: str) -> int:
    """The entry of a list named by an index, or by the label (else name) of a table entry."""
    if re.fullmatch(r"-?[0-9]+", key):
        idx = int(key)
        if not -len(node) <= idx < len(node):
            raise RecipeError(f"--set {item!r}: index {idx} out of range (the list has {len(node)} entries)")
        return idx
    labels = [e.get("label", e.get("name")) if isinstance(e, dict) else None for e in node]
    if key in labels:
        return labels.index(key)
    close = difflib.get_close_matches(key, [lab for lab in labels if isinstance(lab, str) and lab], n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; entries: {', '.join(str(x) for x in labels)}"
    raise RecipeError(f"--set {item!r}: no entry {key!r}{hint}")


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value
