"""The layering of the architecture note, checked on the source: imports point downwards only, and the CLI package
has no import cycle.

Every ``import`` and ``from ... import`` in every module counts, those inside functions too (a lazy import is still a
dependency). Layers, top to bottom (``../shared/ARCHITECTURE.md``): entry points (CLI, API), the runtime, evals,
agents, router and tools, the engines (market, analysis, risk, execution: they share market symbols and use each
other's results), memory, and the shared base (domain, settings, errors). A module may import its own layer or any
below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mikey"

LAYERS: dict[str, int] = {
    "mikey.domain": 0, "mikey.settings": 0, "mikey.errors": 0,
    "mikey.memory": 1,
    "mikey.market": 2, "mikey.analysis": 2, "mikey.risk": 2, "mikey.execution": 2, "mikey.alerts": 2,
    "mikey.tools": 3, "mikey.router": 3,
    "mikey.agents": 4,
    "mikey.evals": 5,
    "mikey.runtime": 6,
    "mikey.cli": 7, "mikey.api": 7, "mikey.__main__": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    for prefix, rank in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + "_"):
            return rank
    return None


def imports(path: Path) -> set[str]:
    """Every mikey module ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from mikey import cli` is mikey.cli
    return {name for name in found if name.startswith("mikey")}


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None and module_name(p) != "mikey"]
    assert not unplaced, f"modules outside every layer (add them to LAYERS): {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_downwards(path: Path) -> None:
    here = module_name(path)
    rank = layer_of(here)
    if rank is None:
        return
    upward = sorted(name for name in imports(path)
                    if (other := layer_of(name)) is not None and other > rank)
    assert not upward, f"{here} (layer {rank}) imports from above: {upward}"


def test_the_cli_has_no_import_cycle() -> None:
    cli = {module_name(p): p for p in SOURCES if layer_of(module_name(p)) == LAYERS["mikey.cli"]
           and module_name(p).startswith("mikey.cli")}
    graph = {name: {dep for dep in imports(path) if dep in cli and dep != name} for name, path in cli.items()}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        seen[name] = 1
        for dep in sorted(graph[name]):
            if seen.get(dep) == 1:
                cycle = trail[trail.index(dep):] + [dep] if dep in trail else [name, dep]
                pytest.fail(f"import cycle in the CLI: {' -> '.join(cycle)}")
            if dep not in seen:
                visit(dep, trail + [dep])
        seen[name] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
