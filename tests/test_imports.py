"""The package's dependency structure: no import cycles (module-level or inside functions), and `serving`
free of torch, transformers and the training package (it runs in a slim image)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stilts_mlflow", "serving")


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of the project that `name` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    modules = {"p.x": tmp_path / "x.py", "p.y": tmp_path / "y.py", "p": tmp_path / "__init__.py"}
    modules["p.x"].write_text("from p import y\n")
    modules["p.y"].write_text("def f():\n    from p.x import g\n")
    assert _imports("p.x", modules["p.x"], modules) == {"p", "p.y"}
    assert _imports("p.y", modules["p.y"], modules) == {"p.x"}


def test_no_import_cycles_in_the_package():
    graph = _graph()
    assert "stilts_mlflow.phases" in graph and "serving.app" in graph  # the walk found the code
    # a subpackage's __init__ re-exporting its modules is not a cycle of design: drop edges into __init__s
    # from their own submodules' point of view (importing `pkg.mod` runs `pkg/__init__` first anyway)
    packages = {n for n, p in _modules().items() if p.name == "__init__.py"}
    graph = {n: {t for t in ts if not (t in packages and n.startswith(t + "."))} for n, ts in graph.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(n for n in _modules() if n.split(".")[0] == "serving"))
def test_serving_does_not_import_training_code(module):
    path = _modules()[module]
    banned = ("torch", "transformers", "stilts_mlflow", "accelerate")
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        )
        for n in names:
            assert n.split(".")[0] not in banned, f"{path.relative_to(ROOT)}:{node.lineno} imports {n}"
