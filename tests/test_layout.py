"""The package layout: one folder per capability, imports that point one way, small modules.

Every import in ``pipeline/`` (at the top of a module or inside a function) is read with
``ast``; the graph of modules must have no cycle, and a package may import only from
packages below it in ``RANKS``. Functions stay at most 50 lines, MLflow is imported only in
``tracking/`` (and the CLI), and private MLflow/Optuna names live only in the two compat modules.
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
    "study": 7,
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


MAX_FUNCTION_LINES = 50
MLFLOW_HOMES = ("pipeline/tracking/", "pipeline/cli.py")  # the README: tracking/ is the one place that talks to MLflow
PRIVATE_HOMES = ("pipeline/tracking/compat.py", "pipeline/sweep/compat.py")  # each library's internals, in one place
PRIVATE_ATTRS = ("_storage", "_trial_id")  # Optuna's study and trial internals, whatever the variable is called
PRIVATE_KEYS = ("fixed_params",)  # the system attribute that Optuna's enqueue_trial writes for itself


def _sources() -> dict[str, ast.Module]:
    return {p.relative_to(REPO).as_posix(): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def long_functions(trees: dict[str, ast.Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'file:line name (n lines)' for every function or method, nested ones included, over ``limit`` lines."""
    found = []
    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return found


def mlflow_imports(trees: dict[str, ast.Module]) -> list[str]:
    """'file:line' of every `import mlflow...` / `from mlflow... import` outside MLFLOW_HOMES."""
    found = []
    for rel, tree in trees.items():
        if rel.startswith(MLFLOW_HOMES):
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                found.append(f"{rel}:{node.lineno}")
    return found


def _dotted(node: ast.AST) -> list[str]:
    """['mlflow', 'tracking', 'fluent', '_x'] for the expression mlflow.tracking.fluent._x; [] if not a plain chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def _library_names(tree: ast.Module) -> set[str]:
    """The names that a module binds to MLflow or Optuna objects (`import mlflow`, `from mlflow.utils import x`)."""
    names = {"mlflow", "optuna"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("mlflow", "optuna"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _private_use(node: ast.AST, library: set[str]) -> str:
    """The private MLflow/Optuna name that ``node`` uses, or ''."""
    if isinstance(node, ast.Attribute):
        chain = _dotted(node)
        if node.attr in PRIVATE_ATTRS or (chain[:1] and chain[0] in library and any(p.startswith("_") for p in chain[1:])):
            return ".".join(chain) or f"<expr>.{node.attr}"
    elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("mlflow", "optuna"):
        private = [a.name for a in node.names if a.name.startswith("_")]
        if private or any(p.startswith("_") for p in node.module.split(".")):
            return f"from {node.module} import {', '.join(private) or '...'}"
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
          and len(node.args) > 1 and isinstance(node.args[0], ast.Name) and node.args[0].id in library
          and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
        return f"{node.func.id}({node.args[0].id}, {node.args[1].value!r})"
    elif isinstance(node, ast.Constant) and node.value in PRIVATE_KEYS:
        return repr(node.value)
    return ""


def private_library_names(trees: dict[str, ast.Module]) -> list[str]:
    """'file:line name' of each private MLflow/Optuna name used outside PRIVATE_HOMES.

    Counted: an attribute path from an MLflow/Optuna name with a `_name` part (`mlflow.pytorch._load_pyfunc`,
    `requirements_utils._MODULES_TO_PACKAGES` after `from mlflow.utils import requirements_utils`), the same
    through getattr/setattr, `from mlflow... import _name`, `._storage` / `._trial_id` on any object, and
    Optuna's internal system-attribute keys (PRIVATE_KEYS).
    """
    found = []
    for rel, tree in trees.items():
        if rel in PRIVATE_HOMES:
            continue
        library = _library_names(tree)
        found += [f"{rel}:{node.lineno} {name}" for node in ast.walk(tree) if (name := _private_use(node, library))]
    return sorted(set(found))


def test_the_source_checkers_find_what_they_look_for():
    src = ("import mlflow.pytorch\nfrom optuna.trial import _x\nfrom mlflow.utils import ru\nru._M = getattr(ru, '_N')\n"
           "def f():\n" + "    y = 1\n" * 50 + "    return mlflow.tracking.fluent._active_run_stack, s._storage\n")
    trees = {"pipeline/train/x.py": ast.parse(src), "pipeline/tracking/compat.py": ast.parse(src)}
    assert long_functions(trees) == ["pipeline/train/x.py:5 f (52 lines)", "pipeline/tracking/compat.py:5 f (52 lines)"]
    assert mlflow_imports(trees) == ["pipeline/train/x.py:1", "pipeline/train/x.py:3"]
    assert private_library_names(trees) == ["pipeline/train/x.py:2 from optuna.trial import _x",
                                            "pipeline/train/x.py:4 getattr(ru, '_N')",
                                            "pipeline/train/x.py:4 ru._M",
                                            "pipeline/train/x.py:56 mlflow.tracking.fluent._active_run_stack",
                                            "pipeline/train/x.py:56 s._storage"]
    assert private_library_names({"p.py": ast.parse("t.system_attrs['fixed_params']")}) == ["p.py:1 'fixed_params'"]
    assert long_functions({"a.py": ast.parse("def g():\n" + "    pass\n" * 49)}) == []  # 50 lines: allowed


def test_functions_stay_short():
    long = long_functions(_sources())
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n  " + "\n  ".join(long)


def test_mlflow_is_imported_only_in_tracking():
    found = mlflow_imports(_sources())
    assert not found, ("mlflow imported outside pipeline/tracking/ and pipeline/cli.py (call tracking's "
                       "functions instead):\n  " + "\n  ".join(found))


def test_private_library_names_stay_in_the_compat_modules():
    found = private_library_names(_sources())
    assert not found, (f"private MLflow/Optuna names outside {', '.join(PRIVATE_HOMES)}:\n  " + "\n  ".join(found))
