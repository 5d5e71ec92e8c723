"""The dependency rules of docs/architecture.md, read from the code's own imports."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "digitexp"
SOURCES = sorted(PACKAGE.rglob("*.py"))
BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


@dataclass(frozen=True)
class Import:
    source: Path
    line: int
    module: str  # the imported module, e.g. "digitexp.engine.trainer" or "mlflow.entities"
    names: tuple[str, ...]  # names taken from it (from-imports)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = tuple(a.name for a in node.names)
            found.append(Import(path, node.lineno, node.module, names))
    return found


def targets(imp: Import) -> list[str]:
    """The digitexp modules an import reaches (a from-import of a submodule counts)."""
    out = [imp.module]
    for name in imp.names:
        candidate = f"{imp.module}.{name}"
        as_path = REPO / Path(*candidate.split("."))
        if as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file():
            out.append(candidate)
    return out


def area(module: str) -> str:
    """The part of the architecture a module belongs to: ``digitexp.engine.trainer`` ->
    ``engine``; top-level modules are their own area (``model``, ``config``...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "digitexp"


ALL_IMPORTS = [imp for path in SOURCES for imp in imports_of(path)]


def violations(sources: set[str], forbidden: set[str]) -> list[str]:
    found = []
    for imp in ALL_IMPORTS:
        if area(module_name(imp.source)) not in sources:
            continue
        for target in targets(imp):
            if target.startswith("digitexp.") and area(target) in forbidden:
                found.append(f"{imp.source.relative_to(REPO)}:{imp.line} imports {target}")
    return found


RULES = [
    # (what, the areas it covers, the areas they must not import)
    (
        "the foundations know nothing above them",
        {"errors", "common", "config", "presets", "spec", "lineage"},
        {"data", "model", "metrics", "submission", "tracking", "engine", "launch", "search"}
        | {"insight", "figures", "report", "cli"},
    ),
    (
        "data, the model and the metrics import no engine, launcher, search, report, CLI or "
        "tracking",
        {"data", "model", "metrics", "submission"},
        {"tracking", "engine", "figures", "insight", "launch", "search", "report", "cli"},
    ),
    (
        "tracking knows MLflow, not what is tracked",
        {"tracking"},
        {"data", "model", "metrics", "submission", "engine", "launch", "search", "report"}
        | {"insight", "figures", "cli", "spec", "lineage", "presets"},
    ),
    (
        "figures draw what a run logged; they do not analyse, launch, search or report",
        {"figures"},
        {"insight", "launch", "search", "report", "cli"},
    ),
    (
        "the engine trains; it does not draw, analyse, launch, search or report",
        {"engine"},
        {"figures", "insight", "launch", "search", "report", "cli"},
    ),
    (
        "insight analyses runs; launchers, search, report and the CLI use it",
        {"insight"},
        {"launch", "search", "report", "cli"},
    ),
    ("launchers, search and report are siblings", {"launch"}, {"search", "report", "cli"}),
    ("launchers, search and report are siblings", {"search"}, {"launch", "report", "cli"}),
    ("launchers, search and report are siblings", {"report"}, {"launch", "search", "cli"}),
]


@pytest.mark.parametrize(("what", "sources", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_dependency_rules(what: str, sources: set[str], forbidden: set[str]) -> None:
    assert violations(sources, forbidden) == [], what


def test_only_tracking_imports_mlflow() -> None:
    found = [
        f"{imp.source.relative_to(REPO)}:{imp.line}"
        for imp in ALL_IMPORTS
        if imp.module.split(".")[0] == "mlflow" and area(module_name(imp.source)) != "tracking"
    ]
    assert found == []


def test_nothing_imports_the_cli() -> None:
    found = [
        f"{imp.source.relative_to(REPO)}:{imp.line}"
        for imp in ALL_IMPORTS
        if any(area(t) == "cli" for t in targets(imp) if t.startswith("digitexp."))
        and area(module_name(imp.source)) != "cli"
        and imp.source.name != "__main__.py"
    ]
    assert found == []


@pytest.mark.parametrize("path", SOURCES + BENCHMARKS, ids=lambda p: module_name(p))
def test_no_module_takes_another_modules_underscore_names(path: Path) -> None:
    """``from digitexp.x import _y`` and ``x._y`` on an imported digitexp module are private
    reaches; what another module needs is public."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()  # local names bound to digitexp modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("digitexp"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                target = f"{node.module}.{alias.name}"
                if target in {module_name(p) for p in SOURCES}:
                    modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert found == []


def test_the_rules_see_real_imports() -> None:
    """A guard for the guard: the reader finds the imports the rules are about."""
    assert any(imp.module == "digitexp.engine" for imp in ALL_IMPORTS)
    assert any(imp.module.startswith("mlflow") for imp in ALL_IMPORTS)
    assert violations({"engine"}, {"metrics"}) != []  # the engine does use the metrics
