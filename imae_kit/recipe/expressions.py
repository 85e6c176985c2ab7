"""``${...}`` in recipe values: arithmetic over ``[vars]``, and the 64-bit range TOML allows."""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
from typing import Any, Mapping

from imae_kit.params import is_number, show_value
from imae_kit.recipe.places import RecipeText

INT64_MAX = 2**63 - 1

_VAR = re.compile(r"\$\{([^}]*)\}")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def check_integers(value: Any, ctx: RecipeText, where: str, path: str = "") -> None:
    """TOML integers are 64-bit (TOML 1.0); tomllib reads any size, so larger ones are refused here."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_integers(v, ctx, where, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_integers(v, ctx, where, f"{path}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        key = path.rsplit(".", 1)[-1].split("[")[0]
        raise ctx.error(f"{where}{path}", f"integer {show_value(value)} is outside the 64-bit range TOML allows; "
                                          f"use a smaller number", key)


def substitute_vars(raw: dict, ctx: RecipeText) -> dict:
    """Replace ``${expr}`` in string values by arithmetic over ``[vars]`` (``${beta}``, ``${2 * beta}``).

    A string that is exactly one ``${...}`` becomes the number (or value) itself; ``${...}`` inside a
    longer string is formatted into it. Vars may refer to vars defined before them.
    """
    variables = raw.get("vars", {})
    if not isinstance(variables, dict):
        raise ctx.error("[vars]", f"must be a table of name = value, got {show_value(variables)}")
    env: dict[str, Any] = {}
    for key, value in variables.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ctx.error("[vars]", f"variable name {key!r} must be letters, digits and '_'", key, "vars")
        env[key] = _subst(value, env, ctx, f"[vars] {key}")
    return {k: (dict(env) if k == "vars" else _subst(v, env, ctx, k)) for k, v in raw.items()}


def _subst(value: Any, env: Mapping[str, Any], ctx: RecipeText, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _subst(v, env, ctx, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_subst(v, env, ctx, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VAR.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), env, ctx, where)
    return _VAR.sub(lambda m: _fmt_any(evaluate(m.group(1), env, ctx, where)), value)


def _fmt_any(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def evaluate(expr: str, env: Mapping[str, Any], ctx: RecipeText, where: str) -> Any:
    """The value of one ``${expr}``: var names, numbers and + - * / ** only (no Python evaluation)."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ctx.error(where, f"cannot read ${{{expr}}}: use a var name or arithmetic like ${{2 * beta}}") from None

    def numbers(*sides: Any) -> None:
        for side in sides:
            if not is_number(side):
                raise ctx.error(where, f"${{{expr}}}: arithmetic needs numbers, got {show_value(side)}")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and is_number(node.value):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                close = difflib.get_close_matches(node.id, list(env), n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                known = ", ".join(env) or "none"
                raise ctx.error(where, f"${{{expr}}} uses undefined var {node.id!r}; {hint}"
                                       f"define it under [vars] (defined: {known})")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            numbers(left, right)
            if (isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int)
                    and abs(left) > 1 and right > 64):
                raise ctx.error(where, f"${{{expr}}}: {left} ** {right} is too large for a recipe value")
            try:
                result = _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ctx.error(where, f"${{{expr}}} divides by zero") from None
            except OverflowError:
                raise ctx.error(where, f"${{{expr}}} is too large for a recipe value") from None
            if not isinstance(result, (int, float)):  # e.g. (-8) ** 0.5 is complex
                raise ctx.error(where, f"${{{expr}}} is not a real number")
            if (isinstance(result, float) and not math.isfinite(result)) or (
                    isinstance(result, int) and not -INT64_MAX - 1 <= result <= INT64_MAX):
                raise ctx.error(where, f"${{{expr}}} is too large for a recipe value")
            return result
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            numbers(v)
            return -v if isinstance(node.op, ast.USub) else v
        raise ctx.error(where, f"${{{expr}}}: only var names, numbers and + - * / ** are allowed")

    try:
        return ev(tree)
    except RecursionError:
        raise ctx.error(where, f"${{{expr[:40]}...}} is nested too deeply; simplify it") from None
