"""The import graph of imae_kit, read with ast: no cycle, no upward import between layers, no hidden imports.

Layers, from the bottom (a module may import its own layer and the ones below):

    0 foundation     errors, params, atomic, progress, tables, precision, distributed
    1 registry       registry
    2 core           step, distributions, estimators, schedules, runs, networks, data (the data sets)
    3 plugins        terms, metrics
    4 spec           recipe
    5 model          objective, model
    6 engines        the trainer and its state (and its form over several processes), evaluation, report, figures
    7 orchestration  training.run / resume, compare, sweep, api
    8 interface      cli, __main__, data.commands, the package's __init__
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imae_kit"

LAYERS = {
    0: ["errors", "params", "atomic", "progress", "tables", "precision", "distributed", "memory", "denormals"],
    1: ["registry"],
    2: ["step", "distributions", "estimators", "schedules", "runs", "networks", "data"],
    3: ["terms", "metrics"],
    4: ["recipe"],
    5: ["objective", "model"],
    6: ["training.trainer", "training.state", "training.setup", "training.signals", "training.divergence",
        "training.monitor", "training.tracking", "training.processes", "evaluation", "report", "figures",
        "rotation"],
    7: ["training.run", "training.resume", "training", "compare", "sweep", "api"],
    8: ["cli", "__main__", "data.commands", ""],
}

# Function-local imports of imae_kit modules that exist for a reason other than dodging a cycle.
LAZY_IMPORTS_ALLOWED = {
    "imae_kit": "the package's __getattr__ loads the training API on first use, so plugins import a light package",
    "imae_kit.cli": "each command imports its machinery when it runs, so `imae-kit --help` does not load torch",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The imae_kit module an import names (``imae_kit.data.base``), or None for other packages."""
    if name != "imae_kit" and not name.startswith("imae_kit."):
        return None
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> list[tuple[str, bool, int]]:
    """(imported imae_kit module, inside a function?, line) for every import statement of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name)
                    if target:
                        found.append((target, in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                for alias in child.names:  # `from imae_kit.data import dsprites` imports the submodule
                    target = _resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _resolve(base)
                    if target:
                        found.append((target, in_function, child.lineno))
            visit(child, local)

    visit(tree, False)
    return [(t, f, line) for t, f, line in found if t != module]


def _layer(module: str) -> int:
    """The layer of a module: the longest listed name it is, or lies under."""
    rel = module[len("imae_kit."):] if module.startswith("imae_kit.") else ""
    best, rank = -1, None
    for r, names in LAYERS.items():
        for name in names:
            if (rel == name or rel.startswith(name + ".") or name == "" and rel == "") and len(name) > best:
                best, rank = len(name), r
    if rank is None:
        raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add it to LAYERS")
    return rank


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_import_points_up_a_layer():
    upward = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)}) at line {line}"
              for m, edges in GRAPH.items() for t, _, line in edges
              if _layer(t) > _layer(m) and not (m == "imae_kit" and t == "imae_kit.api")]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    edges = {m: sorted({t for t, _, _ in GRAPH[m]}) for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                cycle = dfs(t)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in MODULES:
        if m not in state:
            cycle = dfs(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_local_import_of_imae_kit_outside_the_allowed_places():
    hidden = [f"{m} line {line}: imports {t} inside a function" for m, edges in GRAPH.items()
              for t, local, line in edges if local and m not in LAZY_IMPORTS_ALLOWED]
    assert not hidden, "\n".join(hidden)


def test_the_registry_imports_none_of_its_entries():
    assert {t for t, _, _ in GRAPH["imae_kit.registry"]} <= {"imae_kit.errors", "imae_kit.params"}


@pytest.mark.parametrize("planted, expected", [
    ("from imae_kit.training import run\n", "imports imae_kit.training"),
    ("def f():\n    from imae_kit import model\n", "inside a function"),
])
def test_the_checks_catch_a_planted_violation(tmp_path, monkeypatch, planted, expected):
    """The walk itself works: an upward import planted in a low module, or a hidden one, is reported."""
    source = MODULES["imae_kit.schedules"].read_text(encoding="utf-8") + "\n" + planted
    fake = tmp_path / "schedules.py"
    fake.write_text(source, encoding="utf-8")
    monkeypatch.setitem(MODULES, "imae_kit.schedules", fake)
    edges = _imports("imae_kit.schedules")
    if "inside a function" in expected:
        assert any(local for _, local, _ in edges)
    else:
        assert any(t.startswith("imae_kit.training") and _layer(t) > _layer("imae_kit.schedules") for t, _, _ in edges)
