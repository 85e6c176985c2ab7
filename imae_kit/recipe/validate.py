"""Validation: a substituted recipe tree into the frozen spec classes, every mistake a placed RecipeError.

Each section is an attrs class typed with ``imae_kit.params`` (``section_values`` reads a table into
one); each registered entry is built here through the registry, once, and kept on its spec.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import attrs

from imae_kit import registry
from imae_kit.metrics.settings import EvalSettings
from imae_kit.params import ParamTypeError, first_conversion_error, is_number, show_value
from imae_kit.recipe.places import RecipeText, check_keys, want_table
from imae_kit.recipe.spec import (TOP_LEVEL_KEYS, DataSpec, ModelSpec, NetworkSpec, ObjectiveSpec, Recipe,
                                  TermSpec, TrainSpec)
from imae_kit.schedules import SCHEDULES, Schedule

FLOAT32_MAX = 3.4028234663852886e38
_SCHEDULE_KEYS = {"constant": ("value",), "linear_warmup": ("value", "steps"),
                  "linear": ("start", "end", "from_step", "to_step"),
                  "linear_epochs": ("start", "end", "from_epoch", "to_epoch")}


def section_values(cls: type, table: dict, ctx: RecipeText, where: str, section: str | None = None, *,
                   required: tuple[str, ...] = (), **given: Any) -> Any:
    """Build ``cls`` (an attrs class of params fields) from ``table``: unknown keys, missing keys, wrong types
    and out-of-range values become placed RecipeErrors. ``given`` supplies fields that are not in the table."""
    fields = [f.name for f in attrs.fields(cls) if f.init and f.name not in given]
    check_keys(table, fields, ctx, where, section)
    for key in required or [f.name for f in attrs.fields(cls) if f.init and f.default is attrs.NOTHING
                            and f.name not in given]:
        if key not in table:
            raise ctx.error(where, f"missing required key {key!r}")
    refused = first_conversion_error(cls, table)
    if refused is not None:
        key, exc = refused
        if isinstance(exc, ParamTypeError):
            message = f"{key!r} must be {exc.expected}, got {show_value(exc.value)}"
        else:
            message = f"{key!r}: {exc}"
        raise ctx.error(where, message, key, section) from None
    try:
        return cls(**table, **given)
    except (TypeError, ValueError) as exc:
        key = next((k for k in table if f"'{k}'" in str(exc)), None)
        raise ctx.error(where, str(exc), key, section) from None


def validate(raw: dict, ctx: RecipeText) -> Recipe:
    """The Recipe of a substituted tree (after ``--set`` and ``${vars}``)."""
    check_keys(raw, TOP_LEVEL_KEYS, ctx, "top level")
    name = _string(raw, "name", ctx, default=Path(ctx.source).stem)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ctx.error("top level", f"name {name!r} must be letters, digits, '_', '-' or '.' (it names the run "
                                     f"directory)", "name")
    description = _string(raw, "description", ctx, default="")
    plugins_raw = raw.get("plugins", [])
    if not isinstance(plugins_raw, list) or not all(isinstance(p, str) for p in plugins_raw):
        raise ctx.error("top level", f"'plugins' must be a list of file paths, got {show_value(plugins_raw)}",
                        "plugins")
    plugins = tuple(_resolve_plugin_path(p, ctx) for p in plugins_raw)
    for p in plugins:
        registry.load_plugin_file(p, origin=f"{ctx.source}: plugins")

    for section in ("data", "model", "objective", "train"):
        if section not in raw:
            raise ctx.error("top level", f"missing section [{section}]; see recipes/imae_dsprites.toml for a "
                                         f"complete recipe")
    data = _data(want_table(raw["data"], ctx, "[data]"), ctx)
    model = _model(want_table(raw["model"], ctx, "[model]"), ctx)
    objective = _objective(want_table(raw["objective"], ctx, "[objective]"), ctx)
    train = _train(want_table(raw["train"], ctx, "[train]"), ctx)
    eval_table = want_table(raw.get("eval", {}), ctx, "[eval]")
    section_values(EvalSettings, eval_table, ctx, "[eval]", "eval")

    resolved = dict(raw)
    if plugins:
        resolved["plugins"] = list(plugins)
    return Recipe(name=name, description=description, plugins=plugins, vars=dict(raw.get("vars", {})),
                  data=data, model=model, objective=objective, train=train, eval=dict(eval_table),
                  source=ctx.source, resolved=resolved)


def _string(table: dict, key: str, ctx: RecipeText, *, default: str | None = None, where: str = "top level",
            section: str | None = None) -> str:
    if key not in table:
        if default is None:
            raise ctx.error(where, f"missing required key {key!r}")
        return default
    if not isinstance(table[key], str):
        raise ctx.error(where, f"{key!r} must be a string, got {show_value(table[key])}", key, section)
    return table[key]


def _resolve_plugin_path(path: str, ctx: RecipeText) -> str:
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


def _data(table: dict, ctx: RecipeText) -> DataSpec:
    name = _string(table, "name", ctx, where="[data]", section="data")
    params = {k: v for k, v in table.items() if k != "name"}
    dataset = registry.build("dataset", name, params, where=f"{ctx.source}: [data]")
    return DataSpec(name=name, params=params, dataset=dataset)


def _network(table: dict, ctx: RecipeText, where: str, section: str) -> NetworkSpec:
    body = _string(table, "body", ctx, default="mlp", where=where, section=section)
    params = {k: v for k, v in table.items() if k != "body"}
    network = registry.build("network", body, params, where=f"{ctx.source}: {where}")
    return NetworkSpec(body=body, params=params, network=network)


def _model(table: dict, ctx: RecipeText) -> ModelSpec:
    where = "[model]"
    check_keys(table, [f.name for f in attrs.fields(ModelSpec)], ctx, where, "model")
    scalars = {k: v for k, v in table.items() if k not in ("encoder", "decoder")}
    spec = section_values(ModelSpec, scalars, ctx, where, "model", encoder=NetworkSpec(), decoder=NetworkSpec())
    enc = _network(want_table(table.get("encoder", {}), ctx, "[model.encoder]"), ctx, "[model.encoder]",
                   "model.encoder")
    dec = _network(want_table(table.get("decoder", {}), ctx, "[model.decoder]"), ctx, "[model.decoder]",
                   "model.decoder")
    return attrs.evolve(spec, encoder=enc, decoder=dec)


def _schedule(value: Any, ctx: RecipeText, where: str) -> Schedule:
    if isinstance(value, bool) or value is None:
        raise ctx.error(where, f"'weight' must be a number or a schedule table, got {show_value(value)}", "weight")
    if is_number(value):
        if not math.isfinite(value):
            raise ctx.error(where, f"'weight' must be finite, got {value}", "weight")
        return Schedule(kind="constant", value=float(value))
    if isinstance(value, str):
        raise ctx.error(where, f"'weight' must be a number, a ${{var}} or a schedule table, got {value!r}", "weight")
    w = f"{where} weight"
    table = dict(want_table(value, ctx, w))
    if "schedule" not in table:
        raise ctx.error(w, "missing required key 'schedule'")
    kind = table.pop("schedule")
    if kind not in SCHEDULES:
        raise ctx.error(w, f"'schedule' must be one of {list(SCHEDULES)}, got {show_value(kind)}", "schedule")
    check_keys(table, _SCHEDULE_KEYS[kind], ctx, f"{where} weight ({kind})")
    schedule = section_values(Schedule, table, ctx, w, required=_SCHEDULE_KEYS[kind], kind=kind)
    if kind == "linear_warmup" and schedule.steps < 1:
        raise ctx.error(w, f"'steps' must be >= 1, got {schedule.steps}", "steps")
    if kind == "linear" and schedule.to_step <= schedule.from_step:
        raise ctx.error(w, f"'to_step' ({schedule.to_step}) must be greater than 'from_step' "
                           f"({schedule.from_step})", "to_step")
    if kind == "linear_epochs" and schedule.to_epoch <= schedule.from_epoch:
        raise ctx.error(w, f"'to_epoch' ({schedule.to_epoch:g}) must be greater than 'from_epoch' "
                           f"({schedule.from_epoch:g})", "to_epoch")
    return schedule


def _objective(table: dict, ctx: RecipeText) -> ObjectiveSpec:
    check_keys(table, ("terms", "monitor"), ctx, "[objective]", "objective")
    entries = table.get("terms", [])
    if not isinstance(entries, list) or not entries:
        raise ctx.error("[objective]", "needs at least one [[objective.terms]] entry with a name and a weight")
    specs: list[TermSpec] = []
    for i, entry in enumerate(entries):
        where = f"[[objective.terms]] #{i + 1}"
        entry = want_table(entry, ctx, where)
        check_keys(entry, ("name", "label", "weight", "params"), ctx, where)
        name = _string(entry, "name", ctx, where=where)
        where = f"[[objective.terms]] #{i + 1} ({name})"
        label = _string(entry, "label", ctx, default=name, where=where)
        weight = _schedule(entry.get("weight", 1.0), ctx, where)
        params = want_table(entry.get("params", {}), ctx, f"{where} params")
        term = registry.build("term", name, params, where=f"{ctx.source}: {where}")
        specs.append(TermSpec(name=name, label=label, weight=weight, params=params, term=term))
    monitor = table.get("monitor", [])
    if not isinstance(monitor, list) or not all(isinstance(m, str) for m in monitor):
        raise ctx.error("[objective]", f"'monitor' must be a list of term names, got {show_value(monitor)}", "monitor")
    for name in monitor:
        term = registry.build("term", name, {}, where=f"{ctx.source}: [objective] monitor ({name})")
        specs.append(TermSpec(name=name, label=name, weight=Schedule(kind="constant", value=0.0),
                              monitored_only=True, term=term))
    seen: set[str] = set()
    for s in specs:
        if s.label in seen:
            raise ctx.error("[objective]", f"two terms are labelled {s.label!r}; give one of them "
                                           f"label = \"{s.label}_2\" (or drop it from 'monitor')")
        seen.add(s.label)
    return ObjectiveSpec(terms=tuple(specs))


def _train(table: dict, ctx: RecipeText) -> TrainSpec:
    w, s = "[train]", "train"
    for key in ("lr", "momentum", "weight_decay"):  # the optimiser multiplies float32 tensors by them
        value = table.get(key, 0.0)
        if is_number(value) and abs(float(value)) > FLOAT32_MAX:
            raise ctx.error(w, f"{key!r} = {value!r} does not fit a float32 (max {FLOAT32_MAX:.3g}); lower it", key, s)
    spec = section_values(TrainSpec, table, ctx, w, s)
    if spec.epochs is None and spec.steps is None:
        raise ctx.error(w, "set a budget: 'epochs = N' or 'steps = N'")
    if spec.epochs is not None and spec.steps is not None:
        raise ctx.error(w, "set 'epochs' or 'steps', not both", "steps", s)
    if not 0 < spec.lr_decay <= 1:
        raise ctx.error(w, f"'lr_decay' (multiplier per epoch) must be in (0, 1], got {spec.lr_decay}", "lr_decay", s)
    return spec
