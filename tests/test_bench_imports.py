"""The harness's import graph has no circles: every module of benchmarks/ can be read (and loaded) on its own,
after the modules it names. Imports inside functions count too: they are dependencies all the same."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PACKAGE = "tssl_plugin.benchmarks"


def _imports(path: Path, modules: Set[str]) -> Set[str]:
    """The sibling modules ``path`` imports, at any depth of its code."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            elif node.level == 0 and node.module and (node.module + ".").startswith(PACKAGE + "."):
                rest = node.module[len(PACKAGE) + 1:]
                names = [rest.split(".")[0]] if rest else [a.name for a in node.names]
            else:
                names = []
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PACKAGE) + 1:].split(".")[0] for a in node.names
                         if a.name.startswith(PACKAGE + "."))
    return {m for m in found if m in modules and m != path.stem}


def import_graph() -> Dict[str, Set[str]]:
    """``{module: the sibling modules it imports}`` for every module of benchmarks/."""
    paths = sorted(BENCHMARKS.glob("*.py"))
    modules = {p.stem for p in paths}
    return {p.stem: _imports(p, modules) for p in paths}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The circles a depth-first walk of ``graph`` meets, each as ``[a, b, ..., a]``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    found: List[List[str]] = []

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_cycle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_every_kind_of_import(tmp_path):
    (tmp_path / "one.py").write_text("from . import two\nfrom .three import x\n"
                                     "def f():\n    from tssl_plugin.benchmarks.four import y\n"
                                     "    import tssl_plugin.benchmarks.five\n")
    assert _imports(tmp_path / "one.py", {"one", "two", "three", "four", "five"}) == {"two", "three", "four", "five"}


def test_benchmarks_import_graph_has_no_circles():
    graph = import_graph()
    assert {"cli", "speed", "train", "timer"} <= set(graph)
    assert "cli" not in graph["speed"] and not any("cli" in deps for name, deps in graph.items() if name != "__main__")
    assert cycles(graph) == []
