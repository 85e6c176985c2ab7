"""One registry for objective terms, evaluation metrics, network bodies and data sets.

Built-in entries register themselves exactly as a third party would: with a decorator on an
attrs class whose fields are the entry's parameters. Third-party entries arrive through the
entry-point groups ``imae_kit.terms``, ``imae_kit.metrics``, ``imae_kit.networks`` and
``imae_kit.datasets``, or through a recipe's ``plugins = ["path/to/file.py"]`` list, loaded by path.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import attrs

from imae_kit.errors import PluginError, RecipeError
from imae_kit.params import first_conversion_error

KINDS = ("term", "metric", "network", "dataset")
ENTRY_POINT_GROUPS = {"term": "imae_kit.terms", "metric": "imae_kit.metrics", "network": "imae_kit.networks",
                      "dataset": "imae_kit.datasets"}
METRIC_NEEDS = ("labels", "factors")

_REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
_ENTRY_POINTS_LOADED = False
_LOADED_PLUGIN_FILES: dict[str, str] = {}

T = TypeVar("T", bound=type)


def _register(kind: str, name: str) -> Callable[[T], T]:
    """Return a class decorator that registers an attrs class under ``name``."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise PluginError(f"cannot register {kind} {name!r}: use letters, digits, '_' or '-'")

    def decorator(cls: T) -> T:
        if not attrs.has(cls):
            raise PluginError(
                f"{kind} {name!r} ({cls.__module__}.{cls.__qualname__}) must be an attrs class: "
                "decorate it with @attrs.frozen under the @register_... line"
            )
        existing = _REGISTRY[kind].get(name)
        if existing is not None and _qualname(existing) != _qualname(cls):
            raise PluginError(
                f"{kind} {name!r} is registered twice: by {_qualname(existing)} and by {_qualname(cls)}; "
                "rename one of them"
            )
        cls.registered_name = name  # type: ignore[attr-defined]
        _REGISTRY[kind][name] = cls
        return cls

    return decorator


def register_term(name: str) -> Callable[[T], T]:
    """Register an objective term: an attrs class with ``sense`` and ``__call__(step) -> Tensor``."""
    def decorator(cls: T) -> T:
        sense = getattr(cls, "sense", None)
        if sense not in ("maximize", "minimize"):
            raise PluginError(
                f"term {name!r} ({_qualname(cls)}) must declare sense = 'maximize' or 'minimize' "
                f"as a class attribute (found {sense!r})"
            )
        if not callable(getattr(cls, "__call__", None)):
            raise PluginError(f"term {name!r} must define __call__(self, step) -> torch.Tensor")
        return _register("term", name)(cls)

    return decorator


def register_metric(name: str) -> Callable[[T], T]:
    """Register an evaluation metric: an attrs class with ``__call__(context) -> result``, a class attribute
    ``result_type`` (the result's class, which reads its eval.json block back) and optionally ``needs``, a
    tuple of "labels" and "factors" (what the data set must have)."""
    def decorator(cls: T) -> T:
        if not any("__call__" in vars(c) for c in cls.__mro__[:-1]):
            raise PluginError(f"metric {name!r} ({_qualname(cls)}) must define __call__(self, context) -> result")
        if not isinstance(getattr(cls, "result_type", None), type):
            raise PluginError(f"metric {name!r} ({_qualname(cls)}) must declare result_type = <its result class> "
                              "as a class attribute")
        needs = getattr(cls, "needs", ())
        if not isinstance(needs, tuple) or any(n not in METRIC_NEEDS for n in needs):
            raise PluginError(f"metric {name!r} ({_qualname(cls)}): needs must be a tuple of {list(METRIC_NEEDS)}, "
                              f"got {needs!r}")
        return _register("metric", name)(cls)

    return decorator


def register_network(name: str) -> Callable[[T], T]:
    """Register a network body: an attrs class with ``build(in_shape, target_shape=None) -> (nn.Module, out_shape)``
    and optionally ``input = "flat"`` or ``"image"`` (what it takes as an encoder; see ``imae_kit.networks``)."""
    return _register("network", name)


def register_dataset(name: str) -> Callable[[T], T]:
    """Register a data set: an attrs class with ``load() -> DataSplits``."""
    return _register("dataset", name)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def ensure_loaded() -> None:
    """Import every installed entry point (once): imae-kit's own built-ins arrive this way too.

    imae-kit's pyproject.toml points the groups at ``imae_kit.terms``, ``imae_kit.metrics``,
    ``imae_kit.networks`` and ``imae_kit.data``, whose imports register the built-in entries; the registry imports none of them
    by name."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for kind, group in ENTRY_POINT_GROUPS.items():
        for ep in importlib.metadata.entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:  # a broken third-party package must not hide the others
                raise PluginError(
                    f"entry point {ep.name!r} in group {group} ({ep.value}) failed to import: "
                    f"{type(exc).__name__}: {exc}; fix or uninstall that package"
                ) from exc
    if not _REGISTRY["term"]:
        raise PluginError("no objective term is registered: imae-kit's entry points are missing, so the package "
                          "is not installed; install it with: pip install -e .")


def load_plugin_file(path: str | Path, *, origin: str = "") -> None:
    """Import a plugin file by path; its decorators register what it defines."""
    p = Path(path).expanduser()
    where = f"{origin}: " if origin else ""
    if not p.is_file():
        raise PluginError(f"{where}plugin file {str(path)!r} not found (looked at {p.resolve()}); fix the path in 'plugins'")
    key = str(p.resolve())
    if key in _LOADED_PLUGIN_FILES:
        return
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    module_name = f"imae_kit_plugin_{p.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise PluginError(f"{where}plugin file {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        line = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(p):
                line = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        raise PluginError(
            f"{where}plugin file {str(path)!r} raised {type(exc).__name__} on import{line}: {exc}"
        ) from exc
    _LOADED_PLUGIN_FILES[key] = module_name


def names(kind: str) -> list[str]:
    """Sorted names registered for ``kind``."""
    ensure_loaded()
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str, *, where: str = "") -> type:
    """Look up a registered class; an unknown name raises RecipeError with the nearest names."""
    ensure_loaded()
    table = _REGISTRY[kind]
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known: {', '.join(sorted(table))}"
    prefix = f"{where}: " if where else ""
    raise RecipeError(f"{prefix}unknown {kind} {name!r}; {hint}")


def build(kind: str, name: str, params: dict[str, Any], *, where: str = "") -> Any:
    """Instantiate a registered entry from recipe params, with errors naming place and valid fields."""
    cls = get(kind, name, where=where)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    prefix = f"{where}: " if where else ""
    unknown = [k for k in params if k not in fields]
    if unknown:
        bad = unknown[0]
        close = difflib.get_close_matches(bad, list(fields), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        valid = ", ".join(fields) if fields else "(none)"
        raise RecipeError(f"{prefix}{kind} {name!r} has no parameter {bad!r}; {hint}valid parameters: {valid}")
    missing = [f for f, a in fields.items() if a.default is attrs.NOTHING and f not in params]
    if missing:
        raise RecipeError(f"{prefix}{kind} {name!r} needs parameter {missing[0]!r}")
    refused = first_conversion_error(cls, params)
    if refused is not None:
        key, exc = refused
        raise RecipeError(f"{prefix}{kind} {name!r}, parameter {key!r}: {exc}") from exc
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{prefix}{kind} {name!r}: {exc}") from exc


def describe_params(cls: type) -> list[tuple[str, str, Any]]:
    """(name, type, default) of each parameter of a registered class."""
    out = []
    for f in attrs.fields(cls):
        if not f.init:
            continue
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        default = None if f.default is attrs.NOTHING else f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append((f.name, str(typ), default))
    return out
