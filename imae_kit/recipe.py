"""Recipes: TOML files that name the data, the model, the weighted objective terms and training.

Loading goes: read TOML -> apply ``--set`` overrides -> substitute ``${...}`` from ``[vars]`` ->
validate into frozen attrs classes. Every mistake a user can make raises ``RecipeError`` with the
file, the place (section, key, line where it can be found) and what to change.
"""

from __future__ import annotations

import ast
import datetime
import difflib
import math
import operator
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import attrs

from imae_kit.errors import RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_LEVEL_KEYS = ("name", "description", "plugins", "vars", "data", "model", "objective", "train", "eval")
SCHEDULES = ("constant", "linear_warmup", "linear")


# ----------------------------------------------------------------------------- weight schedules

@attrs.frozen
class Schedule:
    """A term's weight as a function of the step.

    - ``constant``: ``value`` at every step;
    - ``linear_warmup``: 0 at step 0 rising linearly to ``value`` at ``steps``, then constant;
    - ``linear``: ``start`` until ``from_step``, linearly to ``end`` at ``to_step``, then ``end``.
    """

    kind: str = "constant"
    value: float = 1.0
    steps: int = 0
    start: float = 0.0
    end: float = 0.0
    from_step: int = 0
    to_step: int = 0

    def at(self, step: int) -> float:
        """The weight at optimisation step ``step`` (counted from 0)."""
        if self.kind == "constant":
            return self.value
        if self.kind == "linear_warmup":
            if self.steps <= 0 or step >= self.steps:
                return self.value
            return self.value * step / self.steps
        if step <= self.from_step:
            return self.start
        if step >= self.to_step:
            return self.end
        frac = (step - self.from_step) / (self.to_step - self.from_step)
        return self.start + frac * (self.end - self.start)

    @property
    def always_zero(self) -> bool:
        """True when the weight is 0 at every step (the term is only monitored)."""
        if self.kind == "linear":
            return self.start == 0 and self.end == 0
        return self.value == 0

    def describe(self) -> str:
        """A short human-readable form, e.g. '4' or 'warmup(4, 1000 steps)'."""
        if self.kind == "constant":
            return _fmt(self.value)
        if self.kind == "linear_warmup":
            return f"warmup({_fmt(self.value)}, {self.steps} steps)"
        return f"linear({_fmt(self.start)}->{_fmt(self.end)}, steps {self.from_step}-{self.to_step})"

    def to_toml(self) -> Any:
        """The TOML value that produces this schedule."""
        if self.kind == "constant":
            return self.value
        if self.kind == "linear_warmup":
            return {"schedule": "linear_warmup", "value": self.value, "steps": self.steps}
        return {"schedule": "linear", "start": self.start, "end": self.end,
                "from_step": self.from_step, "to_step": self.to_step}


def _fmt(v: float) -> str:
    return f"{v:g}"


# ----------------------------------------------------------------------------- recipe sections

@attrs.frozen
class DataSpec:
    """[data]: a registered data set name and its parameters."""

    name: str
    params: Mapping[str, Any] = attrs.Factory(dict)


@attrs.frozen
class NetworkSpec:
    """[model.encoder] / [model.decoder]: a registered network body and its parameters."""

    body: str = "mlp"
    params: Mapping[str, Any] = attrs.Factory(dict)


@attrs.frozen
class ModelSpec:
    """[model]: latent sizes K1 (continuous) and K2 (categories), Gumbel temperature, likelihood."""

    latent_continuous: int
    latent_discrete: int
    encoder: NetworkSpec
    decoder: NetworkSpec
    temperature: float = 0.67
    likelihood: str = "bernoulli"


@attrs.frozen
class TermSpec:
    """One [[objective.terms]] entry: a registered term, its label, weight schedule and params."""

    name: str
    label: str
    weight: Schedule
    params: Mapping[str, Any] = attrs.Factory(dict)
    monitored_only: bool = False


@attrs.frozen
class ObjectiveSpec:
    """[objective]: the weighted terms (monitor-only ones have weight 0)."""

    terms: tuple[TermSpec, ...]


@attrs.frozen
class TrainSpec:
    """[train]: optimiser, schedule, batch size, budget, seed and bookkeeping."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_decay: float = 1.0
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int | None = None
    steps: int | None = None
    seed: int = 0
    device: str = "cpu"
    log_every: int = 50
    checkpoint_every: int = 0
    grad_clip: float = 0.0


@attrs.frozen
class Recipe:
    """A validated recipe. ``resolved`` is the plain dict after overrides and ${vars} (written to runs)."""

    name: str
    description: str
    plugins: tuple[str, ...]
    vars: Mapping[str, Any]
    data: DataSpec
    model: ModelSpec
    objective: ObjectiveSpec
    train: TrainSpec
    eval: Mapping[str, Any]
    source: str
    resolved: Mapping[str, Any]

    def objective_formula(self) -> str:
        """The objective as a weighted sum to maximise, e.g. 'L = reconstruction + 4 * discrete_mi - ...'."""
        parts = []
        for t in self.objective.terms:
            if t.weight.always_zero:
                continue
            sign = "+" if _term_sense(t.name) == "maximize" else "-"
            w = t.weight.describe()
            parts.append(f"{sign} {t.label}" if w == "1" else f"{sign} {w} * {t.label}")
        text = " ".join(parts).lstrip("+ ").strip()
        return f"maximise  {text}" if text else "maximise  (no term weighted in)"


def _term_sense(name: str) -> str:
    from imae_kit import registry

    return registry.get("term", name).sense


# ----------------------------------------------------------------------------- public entry points

def load_recipe(path: str | Path, overrides: Iterable[str] = (), *, steps: int | None = None) -> Recipe:
    """Read, override, substitute and validate a recipe file (see the module docstring).

    ``steps`` replaces the training budget (``train.steps = steps``, ``train.epochs`` dropped)."""
    p = Path(path)
    if not p.is_file():
        hint = ""
        if p.suffix != ".toml":
            hint = " (recipes are .toml files)"
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
    ctx = _Context(source, text)
    _check_integers(raw, ctx, "")
    raw = apply_overrides(raw, list(overrides), ctx)
    _check_integers(raw, ctx, "--set: ")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= INT64_MAX:
            raise RecipeError(f"{source}: --steps must be a positive integer, got {steps!r}")
        train = raw.get("train")
        if isinstance(train, dict):
            train = dict(train)
            train.pop("epochs", None)
            train["steps"] = steps
            raw = {**raw, "train": train}
    resolved = substitute_vars(raw, ctx)
    return _validate(resolved, ctx)


INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_integers(value: Any, ctx: "_Context", where: str, path: str = "") -> None:
    """TOML integers are 64-bit (TOML 1.0); tomllib reads any size, so larger ones are refused here."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_integers(v, ctx, where, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_integers(v, ctx, where, f"{path}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        key = path.rsplit(".", 1)[-1].split("[")[0]
        raise ctx.error(f"{where}{path}", f"integer {_show(value)} is outside the 64-bit range TOML allows; "
                                          f"use a smaller number", key)


# ----------------------------------------------------------------------------- errors with places

@attrs.define
class _Context:
    source: str
    text: str

    def line_of(self, key: str, section: str | None = None) -> str:
        """' (line N)' where ``key = ...`` first appears (after ``[section]`` if given), else ''."""
        lines = self.text.splitlines()
        start = 0
        if section:
            pat = re.compile(r"^\s*\[+\s*" + re.escape(section) + r"\s*\]+\s*(#.*)?$")
            for i, line in enumerate(lines):
                if pat.match(line):
                    start = i
                    break
        keypat = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
        for i in range(start, len(lines)):
            if keypat.match(lines[i]):
                return f" (line {i + 1})"
        inline = re.compile(r"[{,]\s*" + re.escape(key) + r"\s*=")
        for i in range(start, len(lines)):
            if inline.search(lines[i]):
                return f" (line {i + 1})"
        return ""

    def error(self, where: str, message: str, key: str | None = None, section: str | None = None) -> RecipeError:
        line = self.line_of(key, section) if key else ""
        return RecipeError(f"{self.source}: {where}{line}: {message}")


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], ctx: _Context, where: str,
                section: str | None = None) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ctx.error(where, f"unknown key {key!r}; {hint}valid keys: {', '.join(allowed)}", key, section)


def _want_table(value: Any, ctx: _Context, where: str) -> dict:
    if not isinstance(value, dict):
        raise ctx.error(where, f"must be a table (a [section] or {{ ... }}), got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _typed(table: Mapping[str, Any], key: str, kind: str, ctx: _Context, where: str, default: Any = attrs.NOTHING,
           *, minimum: float | None = None, choices: tuple[str, ...] | None = None, section: str | None = None) -> Any:
    """Read ``table[key]`` as int/float/str/bool/int_or_none with bounds; raise a placed RecipeError."""
    if key not in table:
        if default is attrs.NOTHING:
            raise ctx.error(where, f"missing required key {key!r}")
        return default
    v = table[key]
    bad = None
    if kind == "int":
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            bad = "an integer"
    elif kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad = "a number"
        else:
            v = float(v)
            if not math.isfinite(v):
                bad = "a finite number"
    elif kind == "str":
        if not isinstance(v, str):
            bad = "a string"
    elif kind == "bool":
        if not isinstance(v, bool):
            bad = "true or false"
    if bad:
        raise ctx.error(where, f"{key!r} must be {bad}, got {_show(table[key])}", key, section)
    if minimum is not None and v < minimum:
        raise ctx.error(where, f"{key!r} must be >= {minimum:g}, got {v!r}", key, section)
    if choices is not None and v not in choices:
        close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ctx.error(where, f"{key!r} must be one of {list(choices)}, got {v!r}; {hint}".rstrip("; "), key, section)
    return v


# ----------------------------------------------------------------------------- overrides

def apply_overrides(raw: dict, overrides: list[str], ctx: _Context) -> dict:
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
        path = path.strip()
        keys = [k.strip() for k in path.split(".") if k.strip()]
        if not keys:
            raise RecipeError(f"{ctx.source}: --set {item!r}: empty path; e.g. --set train.lr=1e-4")
        value = parse_override_value(text.strip())
        node: Any = out
        try:
            for i, key in enumerate(keys[:-1]):
                node = _descend(node, key, keys[: i + 1], item, create=True, next_key=keys[i + 1])
            last = keys[-1]
            if isinstance(node, list):
                idx = _list_index(node, last, item)
                node[idx] = value
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


def _descend(node: Any, key: str, sofar: list[str], item: str, *, create: bool, next_key: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, item)]
    if not isinstance(node, dict):
        raise RecipeError(f"--set {item!r}: {'.'.join(sofar[:-1])} is a value, not a table")
    if key not in node:
        if not create:
            raise RecipeError(f"--set {item!r}: no {'.'.join(sofar)} in the recipe")
        node[key] = {}
    return node[key]


def _list_index(node: list, key: str, item: str) -> int:
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


# ----------------------------------------------------------------------------- ${vars}

_VAR = re.compile(r"\$\{([^}]*)\}")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def substitute_vars(raw: dict, ctx: _Context) -> dict:
    """Replace ``${expr}`` in string values by arithmetic over ``[vars]`` (``${beta}``, ``${2 * beta}``).

    A string that is exactly one ``${...}`` becomes the number (or value) itself; ``${...}`` inside a
    longer string is formatted into it. Vars may refer to vars defined before them.
    """
    variables = raw.get("vars", {})
    if not isinstance(variables, dict):
        raise ctx.error("[vars]", f"must be a table of name = value, got {_show(variables)}")
    env: dict[str, Any] = {}
    for key, value in variables.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ctx.error("[vars]", f"variable name {key!r} must be letters, digits and '_'", key, "vars")
        env[key] = _subst(value, env, ctx, f"[vars] {key}")
    out = {k: (dict(env) if k == "vars" else _subst(v, env, ctx, k)) for k, v in raw.items()}
    return out


def _subst(value: Any, env: Mapping[str, Any], ctx: _Context, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _subst(v, env, ctx, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_subst(v, env, ctx, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VAR.fullmatch(value.strip())
    if whole:
        return _evaluate(whole.group(1), env, ctx, where)
    return _VAR.sub(lambda m: _fmt_any(_evaluate(m.group(1), env, ctx, where)), value)


def _fmt_any(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _evaluate(expr: str, env: Mapping[str, Any], ctx: _Context, where: str) -> Any:
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ctx.error(where, f"cannot read ${{{expr}}}: use a var name or arithmetic like ${{2 * beta}}") from None

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
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
            for side in (left, right):
                if isinstance(side, bool) or not isinstance(side, (int, float)):
                    raise ctx.error(where, f"${{{expr}}}: arithmetic needs numbers, got {_show(side)}")
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
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ctx.error(where, f"${{{expr}}}: arithmetic needs numbers, got {_show(v)}")
            return -v if isinstance(node.op, ast.USub) else v
        raise ctx.error(where, f"${{{expr}}}: only var names, numbers and + - * / ** are allowed")

    try:
        return ev(tree)
    except RecursionError:
        raise ctx.error(where, f"${{{expr[:40]}...}} is nested too deeply; simplify it") from None


# ----------------------------------------------------------------------------- validation

def _validate(raw: dict, ctx: _Context) -> Recipe:
    from imae_kit import registry

    _check_keys(raw, TOP_LEVEL_KEYS, ctx, "top level")
    name = _typed(raw, "name", "str", ctx, "top level", default=Path(ctx.source).stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ctx.error("top level", f"name {name!r} must be letters, digits, '_', '-' or '.' (it names the run directory)", "name")
    description = _typed(raw, "description", "str", ctx, "top level", default="")
    plugins_raw = raw.get("plugins", [])
    if not isinstance(plugins_raw, list) or not all(isinstance(p, str) for p in plugins_raw):
        raise ctx.error("top level", f"'plugins' must be a list of file paths, got {_show(plugins_raw)}", "plugins")
    plugins = tuple(_resolve_plugin_path(p, ctx) for p in plugins_raw)
    for p in plugins:
        registry.load_plugin_file(p, origin=f"{ctx.source}: plugins")

    for section in ("data", "model", "objective", "train"):
        if section not in raw:
            raise ctx.error("top level", f"missing section [{section}]; see recipes/imae_dsprites.toml for a complete recipe")

    data = _validate_data(_want_table(raw["data"], ctx, "[data]"), ctx)
    model = _validate_model(_want_table(raw["model"], ctx, "[model]"), ctx)
    objective = _validate_objective(_want_table(raw["objective"], ctx, "[objective]"), ctx)
    train = _validate_train(_want_table(raw["train"], ctx, "[train]"), ctx)
    eval_table = _validate_eval(_want_table(raw.get("eval", {}), ctx, "[eval]"), ctx)

    resolved = dict(raw)
    if plugins:
        resolved["plugins"] = list(plugins)
    return Recipe(name=name, description=description, plugins=plugins, vars=dict(raw.get("vars", {})),
                  data=data, model=model, objective=objective, train=train, eval=eval_table,
                  source=ctx.source, resolved=resolved)


def _resolve_plugin_path(path: str, ctx: _Context) -> str:
    """Plugin paths are tried relative to the recipe's folder, then to the working directory."""
    try:
        p = Path(path).expanduser()
        if p.is_absolute():
            return str(p)
        candidates = [Path(ctx.source).parent / p, Path.cwd() / p]
        for c in candidates:
            if c.is_file():
                return str(c.resolve())
    except (OSError, RuntimeError, ValueError) as exc:  # a null byte, a name too long, ~nouser
        raise ctx.error("plugins", f"plugin path {path!r} cannot be used ({exc}); fix the path", "plugins") from None
    tried = " and ".join(str(c) for c in candidates)
    raise ctx.error("plugins", f"plugin file {path!r} not found (tried {tried}); fix the path", "plugins")


def _validate_data(table: dict, ctx: _Context) -> DataSpec:
    from imae_kit import registry

    name = _typed(table, "name", "str", ctx, "[data]", section="data")
    params = {k: v for k, v in table.items() if k != "name"}
    registry.build("dataset", name, params, where=f"{ctx.source}: [data]")  # validate params now
    return DataSpec(name=name, params=params)


def _validate_network(table: dict, ctx: _Context, where: str, section: str) -> NetworkSpec:
    from imae_kit import registry

    body = _typed(table, "body", "str", ctx, where, default="mlp", section=section)
    params = {k: v for k, v in table.items() if k != "body"}
    registry.build("network", body, params, where=f"{ctx.source}: {where}")
    return NetworkSpec(body=body, params=params)


def _validate_model(table: dict, ctx: _Context) -> ModelSpec:
    where = "[model]"
    _check_keys(table, ("latent_continuous", "latent_discrete", "temperature", "likelihood", "encoder", "decoder"),
                ctx, where, "model")
    k1 = _typed(table, "latent_continuous", "int", ctx, where, minimum=1, section="model")
    k2 = _typed(table, "latent_discrete", "int", ctx, where, minimum=2, section="model")
    temperature = _typed(table, "temperature", "float", ctx, where, default=0.67, section="model")
    if temperature <= 0:
        raise ctx.error(where, f"'temperature' must be > 0, got {temperature}", "temperature", "model")
    likelihood = _typed(table, "likelihood", "str", ctx, where, default="bernoulli", choices=("bernoulli",),
                        section="model")
    enc = _validate_network(_want_table(table.get("encoder", {}), ctx, "[model.encoder]"), ctx,
                            "[model.encoder]", "model.encoder")
    dec = _validate_network(_want_table(table.get("decoder", {}), ctx, "[model.decoder]"), ctx,
                            "[model.decoder]", "model.decoder")
    return ModelSpec(latent_continuous=k1, latent_discrete=k2, encoder=enc, decoder=dec,
                     temperature=temperature, likelihood=likelihood)


def _validate_schedule(value: Any, ctx: _Context, where: str) -> Schedule:
    if isinstance(value, bool) or value is None:
        raise ctx.error(where, f"'weight' must be a number or a schedule table, got {_show(value)}", "weight")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ctx.error(where, f"'weight' must be finite, got {value}", "weight")
        return Schedule(kind="constant", value=float(value))
    if isinstance(value, str):
        raise ctx.error(where, f"'weight' must be a number, a ${{var}} or a schedule table, got {value!r}", "weight")
    table = _want_table(value, ctx, f"{where} weight")
    kind = _typed(table, "schedule", "str", ctx, f"{where} weight", choices=SCHEDULES)
    allowed = {"constant": ("value",), "linear_warmup": ("value", "steps"),
               "linear": ("start", "end", "from_step", "to_step")}[kind]
    _check_keys(table, ("schedule",) + allowed, ctx, f"{where} weight ({kind})")
    w = f"{where} weight"
    if kind == "constant":
        return Schedule(kind=kind, value=_typed(table, "value", "float", ctx, w))
    if kind == "linear_warmup":
        return Schedule(kind=kind, value=_typed(table, "value", "float", ctx, w),
                        steps=_typed(table, "steps", "int", ctx, w, minimum=1))
    start = _typed(table, "start", "float", ctx, w)
    end = _typed(table, "end", "float", ctx, w)
    a = _typed(table, "from_step", "int", ctx, w, minimum=0)
    b = _typed(table, "to_step", "int", ctx, w, minimum=0)
    if b <= a:
        raise ctx.error(w, f"'to_step' ({b}) must be greater than 'from_step' ({a})", "to_step")
    return Schedule(kind=kind, start=start, end=end, from_step=a, to_step=b)


def _validate_objective(table: dict, ctx: _Context) -> ObjectiveSpec:
    from imae_kit import registry

    _check_keys(table, ("terms", "monitor"), ctx, "[objective]", "objective")
    entries = table.get("terms", [])
    if not isinstance(entries, list) or not entries:
        raise ctx.error("[objective]", "needs at least one [[objective.terms]] entry with a name and a weight")
    specs: list[TermSpec] = []
    for i, entry in enumerate(entries):
        where = f"[[objective.terms]] #{i + 1}"
        entry = _want_table(entry, ctx, where)
        _check_keys(entry, ("name", "label", "weight", "params"), ctx, where)
        name = _typed(entry, "name", "str", ctx, where)
        where = f"[[objective.terms]] #{i + 1} ({name})"
        label = _typed(entry, "label", "str", ctx, where, default=name)
        weight = _validate_schedule(entry.get("weight", 1.0), ctx, where)
        params = _want_table(entry.get("params", {}), ctx, f"{where} params")
        registry.build("term", name, params, where=f"{ctx.source}: {where}")
        specs.append(TermSpec(name=name, label=label, weight=weight, params=params))
    monitor = table.get("monitor", [])
    if not isinstance(monitor, list) or not all(isinstance(m, str) for m in monitor):
        raise ctx.error("[objective]", f"'monitor' must be a list of term names, got {_show(monitor)}", "monitor")
    for name in monitor:
        where = f"[objective] monitor ({name})"
        registry.build("term", name, {}, where=f"{ctx.source}: {where}")
        specs.append(TermSpec(name=name, label=name, weight=Schedule(kind="constant", value=0.0),
                              monitored_only=True))
    seen: dict[str, int] = {}
    for s in specs:
        if s.label in seen:
            raise ctx.error("[objective]", f"two terms are labelled {s.label!r}; give one of them "
                                           f"label = \"{s.label}_2\" (or drop it from 'monitor')")
        seen[s.label] = 1
    return ObjectiveSpec(terms=tuple(specs))


def _validate_train(table: dict, ctx: _Context) -> TrainSpec:
    w, s = "[train]", "train"
    _check_keys(table, [f.name for f in attrs.fields(TrainSpec)], ctx, w, s)
    epochs = _typed(table, "epochs", "int", ctx, w, default=None, minimum=1, section=s)
    steps = _typed(table, "steps", "int", ctx, w, default=None, minimum=1, section=s)
    if epochs is None and steps is None:
        raise ctx.error(w, "set a budget: 'epochs = N' or 'steps = N'")
    if epochs is not None and steps is not None:
        raise ctx.error(w, "set 'epochs' or 'steps', not both", "steps", s)
    lr_decay = _typed(table, "lr_decay", "float", ctx, w, default=1.0, section=s)
    if not 0 < lr_decay <= 1:
        raise ctx.error(w, f"'lr_decay' (multiplier per epoch) must be in (0, 1], got {lr_decay}", "lr_decay", s)
    lr = _typed(table, "lr", "float", ctx, w, default=1e-3, section=s)
    if lr <= 0:
        raise ctx.error(w, f"'lr' must be > 0, got {lr}", "lr", s)
    for key in ("lr", "momentum", "weight_decay"):  # the optimiser multiplies float32 tensors by them
        if abs(float(table.get(key, 0.0) if _is_real(table.get(key, 0.0)) else 0.0)) > FLOAT32_MAX:
            raise ctx.error(w, f"{key!r} = {table[key]!r} does not fit a float32 (max {FLOAT32_MAX:.3g}); lower it",
                            key, s)
    device = _typed(table, "device", "str", ctx, w, default="cpu", section=s)
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps|auto", device):
        raise ctx.error(w, f"'device' must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}", "device", s)
    return TrainSpec(
        optimizer=_typed(table, "optimizer", "str", ctx, w, default="adam", choices=("adam", "sgd"), section=s),
        lr=lr,
        momentum=_typed(table, "momentum", "float", ctx, w, default=0.9, minimum=0.0, section=s),
        lr_decay=lr_decay,
        weight_decay=_typed(table, "weight_decay", "float", ctx, w, default=0.0, minimum=0.0, section=s),
        batch_size=_typed(table, "batch_size", "int", ctx, w, default=64, minimum=2, section=s),
        epochs=epochs,
        steps=steps,
        seed=_typed(table, "seed", "int", ctx, w, default=0, minimum=0, section=s),
        device=device,
        log_every=_typed(table, "log_every", "int", ctx, w, default=50, minimum=1, section=s),
        checkpoint_every=_typed(table, "checkpoint_every", "int", ctx, w, default=0, minimum=0, section=s),
        grad_clip=_typed(table, "grad_clip", "float", ctx, w, default=0.0, minimum=0.0, section=s),
    )


def _validate_eval(table: dict, ctx: _Context) -> dict:
    """[eval] keys are the evaluation settings (``imae_kit.evaluate.EvalSettings``), checked here."""
    from imae_kit.evaluate import EvalSettings
    from imae_kit.params import first_conversion_error

    _check_keys(table, [f.name for f in attrs.fields(EvalSettings)], ctx, "[eval]", "eval")
    refused = first_conversion_error(EvalSettings, table)
    if refused is not None:
        key, exc = refused
        raise ctx.error("[eval]", f"{key!r}: {exc}", key, "eval") from None
    try:
        EvalSettings(**table)
    except (TypeError, ValueError) as exc:
        raise ctx.error("[eval]", str(exc)) from exc
    return dict(table)


# ----------------------------------------------------------------------------- writing

def dump_toml(data: Mapping[str, Any]) -> str:
    """Write a recipe-shaped dict (scalars, lists, tables, arrays of tables) as TOML."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    _dump_tables(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_tables(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    for k, v in data.items():
        path = prefix + [k]
        if _is_table(v):
            lines.append("")
            lines.append(f"[{'.'.join(_key(p) for p in path)}]")
            for kk, vv in v.items():
                if not _is_table(vv) and not _is_table_array(vv):
                    lines.append(f"{_key(kk)} = {_value(vv)}")
            _dump_tables(v, path, lines)
        elif _is_table_array(v):
            for entry in v:
                lines.append("")
                lines.append(f"[[{'.'.join(_key(p) for p in path)}]]")
                for kk, vv in entry.items():
                    lines.append(f"{_key(kk)} = {_value(vv)}")


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(e, dict) for e in v)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _string(k)


def _string(s: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped (TOML 1.0)."""
    out = []
    for ch in s:
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime.date, datetime.time)):  # datetime.datetime is a date
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(e)}" for k, e in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
