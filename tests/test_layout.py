"""The package layout: one folder per capability, imports that point one way, small modules.

Every import in ``pipeline/`` (at the top of a module or inside a function) is read with
``ast``; the graph of modules must have no cycle, and a package may import only from
packages below it in ``RANKS``.
"""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "pipeline"
MAX_LINES = 300

# A module may import modules of its own package and of packages with a lower rank.
RANKS = {
    "errors": 0,
    "config": 1,
    "tracking": 2,
    "models": 3,
    "data": 3,
    "train": 4,
    "evaluate": 5,
    "capacity": 5,
    "sweep": 6,
    "diagnose": 6,
    "main": 7,
    "cli": 8,
    "__main__": 9,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The pipeline modules that ``path`` imports (``from pipeline.x import y`` counts y when y is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != "pipeline"}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) for name, path in mods.items()}


def capability(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules():
    assert find_cycle(graph()) is None


def test_dependencies_point_one_way():
    wrong = []
    for module, targets in graph().items():
        src = capability(module)
        if src == "__init__":
            continue
        for target in targets:
            dst = capability(target)
            if dst != src and RANKS[dst] >= RANKS[src]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering (see RANKS): " + ", ".join(sorted(wrong))


def test_every_capability_has_a_rank():
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"}
    assert top <= set(RANKS), f"give {sorted(top - set(RANKS))} a rank in RANKS"
    assert len(top) <= 14, f"pipeline/ has {len(top)} entries; group them into capability packages"


def test_modules_stay_small():
    big = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by concept): {big}"


def test_package_inits_are_a_docstring_and_nothing_else():
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        body = ast.parse(init.read_text()).body
        assert body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init
        assert len(body) == 1, f"{init}: only a docstring (no imports, no re-exports, no work)"
