"""Each DVC stage depends on every file of ours that its command imports (issue 31 §1-2).

A stage's import closure is computed statically: its command names an entry (``rd-train <command>``: the
module ``rd_train.cli`` and the imports inside that command's handler; ``python -m <module>``: that
module), and every import of our packages that a module makes, at its top or inside a function, adds
that module, its parent packages' ``__init__.py`` and their imports, transitively. That is conservative
(a lazily imported module counts even on a branch a stage may not take), which is what a dependency list
must be: DVC re-runs a stage when any file its code may run changes.

A file of the closure is covered when it is a stage dependency or lies under one: dvc.yaml names a folder
where the stage imports every module in it, and files otherwise. Every dependency line is needed: removing
any one leaves a file of the closure uncovered (tested), so the lists stay exact.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"rd_train": ROOT / "packages/rd-train/src", "rd_theory": ROOT / "packages/rd-theory/src",
           "rd_kernels": ROOT / "packages/rd-kernels/src"}


def module_file(module: str) -> Path | None:
    """The file of an importable module of ours (a package's ``__init__.py``), or None."""
    top = module.split(".")[0]
    if top not in SOURCES:
        return None
    base = SOURCES[top].joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module of ours named by an import anywhere in ``tree`` (``from a.b import c`` names a.b and,
    when c is a module, a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if module_file(m) is not None}


def top_level(tree: ast.Module) -> ast.Module:
    """The statements of a module outside its functions (what importing it runs)."""
    return ast.Module(body=[node for node in tree.body if not isinstance(node, ast.FunctionDef)],
                      type_ignores=[])


def closure(modules: set[str], entry_only_top_level: str | None = None) -> set[Path]:
    """The files of ``modules``, their parent packages and everything they import, transitively; of the
    module ``entry_only_top_level`` (the CLI, whose handlers import each command's code) only the imports
    outside its functions."""
    files: set[Path] = set()
    todo = list(modules)
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ first
            name = ".".join(parts[:i])
            if name in seen or module_file(name) is None:
                continue
            seen.add(name)
            path = module_file(name)
            assert path is not None
            files.add(path)
            tree = ast.parse(path.read_text())
            todo += imported_modules(top_level(tree) if name == entry_only_top_level else tree)
    return files


def handler_imports(command: str) -> set[str]:
    """The modules the handler of ``rd-train <command>`` imports (cli.COMMANDS maps a name to it)."""
    tree = ast.parse((SOURCES["rd_train"] / "rd_train" / "cli.py").read_text())
    table = next(node for node in tree.body if isinstance(node, ast.AnnAssign)
                 and ast.unparse(node.target) == "COMMANDS")
    assert isinstance(table.value, ast.Dict)
    pairs = zip(table.value.keys, table.value.values, strict=True)
    handlers = {ast.literal_eval(k): ast.unparse(v) for k, v in pairs if k is not None}
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                    and node.name == handlers[command])
    return imported_modules(function)


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, ``foreach`` expanded (``${item}`` only: the deps do not vary by item)."""
    out = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in stage:
            for item in stage["foreach"]:
                body = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
                out[f"{name}@{item}"] = yaml.safe_load(body)
        else:
            out[name] = stage
    return out


def stage_closure(stage: dict) -> set[Path]:
    words = shlex.split(" ".join(stage["cmd"].split()))
    if words[0] == "rd-train":
        return closure({"rd_train.cli"} | handler_imports(words[1]), entry_only_top_level="rd_train.cli")
    if words[:2] == ["python", "-m"]:
        return closure({words[2]})
    raise AssertionError(f"an unknown kind of stage command: {stage['cmd']}")


def uncovered(stage: dict, files: set[Path]) -> list[str]:
    deps = [ROOT / d for d in stage.get("deps", []) if "${" not in d]
    return sorted(str(f.relative_to(ROOT)) for f in files
                  if not any(f == d or d in f.parents for d in deps))


def test_the_closure_follows_lazy_imports_and_parent_packages():
    files = stage_closure({"cmd": "rd-train report --records paper/records"})
    names = {str(f.relative_to(ROOT)) for f in files}
    assert "packages/rd-train/src/rd_train/__init__.py" in names  # a parent package runs first
    assert "packages/rd-train/src/rd_train/protocol/claims.py" in names  # imported by the handler's module
    assert "packages/rd-theory/src/rd_theory/atomic.py" in names  # across packages
    assert "packages/rd-train/src/rd_train/pipeline/plan.py" not in names  # another command's handler
    assert uncovered({"deps": ["packages/rd-train/src", "packages/rd-theory/src", "packages/rd-kernels/src"]},
                     files) == []
    assert "packages/rd-train/src/rd_train/protocol/claims.py" in uncovered(
        {"deps": ["packages/rd-theory/src", "packages/rd-kernels/src"]}, files)  # a missing dep is found


def code_stages() -> dict[str, dict]:
    return {name: stage for name, stage in stages().items()
            if stage["cmd"].split()[0] in ("rd-train", "python")}


def test_every_stage_depends_on_every_file_its_command_imports():
    missing = {name: uncovered(stage, stage_closure(stage)) for name, stage in code_stages().items()}
    missing = {name: files for name, files in missing.items() if files}
    assert not missing, "\n".join(f"{name}: {len(f)} files, e.g. {f[:3]}" for name, f in missing.items())


def test_every_code_dependency_line_is_needed():
    """Removing any one dependency under packages/ from a stage leaves a file it imports uncovered: the test
    above would fail on it, and no stage re-runs for code it never imports."""
    unneeded = []
    for name, stage in code_stages().items():
        closure_files = stage_closure(stage)
        for dep in stage.get("deps", []):
            if dep.startswith("packages/"):
                rest = {**stage, "deps": [d for d in stage["deps"] if d != dep]}
                if not uncovered(rest, closure_files):
                    unneeded.append(f"{name}: {dep}")
    assert not unneeded, unneeded
