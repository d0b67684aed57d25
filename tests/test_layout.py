"""rd_train's house (issue 31): the folders show the architecture. Each subpackage is one room (one run's
training, the pipeline of many runs, statistics, the mechanism, the protocol's report, ...); rooms import
each other in one direction only, the top level holds at most eight modules, and no module outgrows 400
lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "packages" / "rd-train" / "src" / "rd_train"
SOURCES = sorted(p for src in (ROOT / "packages").glob("*/src") for p in src.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.Module, here: str) -> set[str]:
    """Every rd_train module a file imports, at any depth (functions too), TYPE_CHECKING blocks aside."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rd_train"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("rd_train"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def room(module: str) -> str:
    """rd_train.training.run -> rd_train.training; a top-level module is its own room."""
    parts = module.split(".")
    return ".".join(parts[:2])


def room_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {room(m): set() for m in modules}
    for name, path in modules.items():
        for target in imports(ast.parse(path.read_text()), name):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `from pkg import name` names an attribute, not a module
            if target in modules and room(target) != room(name) and room(target) != "rd_train":
                graph[room(name)].add(room(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_rooms_of_rd_train_import_each_other_in_one_direction():
    assert cycles(room_graph()) == []


def test_the_cycle_finder_finds_a_cycle_between_rooms():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_skips_type_checking_and_reads_lazy_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rd_train.x import A\n"
                     "def f():\n    from rd_train.y import b\n")
    assert imports(tree, "rd_train.z") == {"rd_train.y", "rd_train.y.b"}


def test_the_top_level_holds_at_most_eight_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_no_module_outgrows_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
