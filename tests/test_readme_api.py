"""Every name the README and the docs site document resolves where the page says it lives.

The pages are README.md and every page under docs/ (the mkdocs site). Four kinds of reference are
checked, so that the documentation and the packages cannot drift apart:

* the README's ```python blocks: each ``from M import a, b`` and ``import M``, then every attribute read
  off a name they bind (``toy.anisotropy``, ``neural.hinge_certificate``) and every method called on an
  instance of an imported class (``balancer = Balancer(...)``; ``balancer.gradient``);
* prose API lists, "... API (`pkg.module`): `name(args)`, `other`, ...": each name is an attribute of
  that module and not a submodule (``from rd_train.analysis import effective_weights`` once gave the
  submodule of that name, which is not callable);
* backticked dotted names in prose, ``rd_x.y.z``: a module or an attribute of one;
* the API reference's mkdocstrings directives, ``::: rd_x.y``: a module or an attribute of one (the
  strict docs build checks them too, in tests/test_docs.py).
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {path.relative_to(ROOT).as_posix(): path.read_text()
         for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
README = PAGES["README.md"]
PACKAGES = ("rd_theory", "rd_kernels", "rd_train")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", text, flags=re.S)


def resolve(dotted: str) -> Any:
    """What Python binds for ``dotted``: attributes first, a submodule only where no attribute is
    (as ``from pkg import name`` does, so a function re-exported over its module's name wins)."""
    first, *rest = dotted.split(".")
    target: Any = importlib.import_module(first)
    path = first
    for name in rest:
        path = f"{path}.{name}"
        if hasattr(target, name):
            target = getattr(target, name)
        else:
            try:
                target = importlib.import_module(path)
            except ModuleNotFoundError:
                raise AttributeError(f"{path} does not exist") from None
    return target


def block_references(source: str) -> list[tuple[str, str, Any]]:
    """(what the README writes, where it says it lives, the object found or an exception)."""
    tree = ast.parse(source)
    bound: dict[str, Any] = {}
    found: list[tuple[str, str, Any]] = []

    def look(label: str, where: str, thunk: Any) -> Any:
        try:
            value = thunk()
        except Exception as error:
            value = error
        found.append((label, where, value))
        return value

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:
                value = look(alias.name, node.module, lambda m=node.module, a=alias.name: resolve(f"{m}.{a}"))
                bound[alias.asname or alias.name] = value
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    bound[alias.asname or alias.name] = look(alias.name, alias.name,
                                                             lambda n=alias.name: resolve(n))
    for node in ast.walk(tree):  # instances: x = Class(...)
        call = node.value if isinstance(node, ast.Assign) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and isinstance(bound.get(call.func.id), type)):
            for target in node.targets:  # type: ignore[attr-defined]
                if isinstance(target, ast.Name):
                    bound[target.id] = bound[call.func.id]
    for node in ast.walk(tree):  # a call of an imported name must call something
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in bound:
            value = bound[node.func.id]
            look(f"{node.func.id}(...)", "a call", lambda v=value: v if callable(v) else _not_callable(v))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            owner = bound[node.value.id]
            if isinstance(owner, types.ModuleType | type):
                where = getattr(owner, "__name__", node.value.id)
                look(node.attr, where, lambda o=owner, a=node.attr: getattr(o, a))
    return found


def _not_callable(value: Any) -> Any:
    raise TypeError(f"{value!r} is not callable")


def prose_api_lists(text: str) -> list[tuple[str, str]]:
    """(module, name) for each backticked name in "API (`module`): ..." paragraphs."""
    pairs = []
    for module, body in re.findall(r"API \(`([\w.]+)`\)\s*:(.*?)(?:\n\n|$)", text, flags=re.S):
        for item in re.findall(r"`([^`]+)`", body):
            name = re.match(r"([A-Za-z_]\w*)\s*(?:\(|$)", item)
            if name:
                pairs.append((module, name.group(1)))
    return pairs


def prose_dotted_names(text: str) -> list[str]:
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    packages = "|".join(PACKAGES)
    names = re.findall(rf"`((?:{packages})(?:\.\w+)+)(?:\([^`]*\))?`", prose)
    return sorted(set(names))


def api_directives(text: str) -> list[str]:
    """The objects of the mkdocstrings directives (``::: rd_x.y``) on a page."""
    return re.findall(r"^:::\s+([\w.]+)\s*$", text, flags=re.M)


def prose_api_problem(module: str, name: str) -> str | None:
    """Why ``name`` of a prose API list of ``module`` is not that module's callable (None if it is)."""
    value = getattr(importlib.import_module(module), name, None)
    if value is None:
        return f"{module}.{name} does not exist"
    if isinstance(value, types.ModuleType):
        return f"{module}.{name} is a submodule, not the documented API"
    if not callable(value):
        return f"{module}.{name} is not callable"
    return None


def _on_pages(find: Any) -> list[tuple[str, Any]]:
    return [(page, item) for page, text in PAGES.items() for item in find(text)]


BLOCKS = [(page, *ref) for page, text in PAGES.items() for block in python_blocks(text)
          for ref in block_references(block)]
PROSE_LISTS = _on_pages(prose_api_lists)
DOTTED = sorted(set(_on_pages(prose_dotted_names)))
DIRECTIVES = _on_pages(api_directives)


def test_the_pages_have_what_this_test_reads():
    """The parsers see the documented API: a test that finds nothing to check cannot fail."""
    assert len(BLOCKS) >= 30
    assert ("docs/configuration.md", ("rd_train.mechanism.curvature", "effective_weights")) in PROSE_LISTS
    assert ("docs/configuration.md", "rd_train.training.losses.vgg16_hed_features") in DOTTED
    assert ("docs/api/rd_theory.md", "rd_theory.toy") in DIRECTIVES
    assert any(page == "README.md" for page, *_ in BLOCKS)


@pytest.mark.parametrize(("page", "label", "where", "value"), BLOCKS,
                         ids=[f"{p}:{w}.{n}" for p, n, w, _ in BLOCKS])
def test_every_name_a_code_block_uses_resolves(page, label, where, value):
    assert not isinstance(value, Exception), f"{page}: {where}.{label} does not resolve: {value!r}"


@pytest.mark.parametrize(("page", "pair"), PROSE_LISTS, ids=[f"{p}:{m}.{n}" for p, (m, n) in PROSE_LISTS])
def test_every_name_of_a_prose_api_list_is_a_callable_of_that_module(page, pair):
    problem = prose_api_problem(*pair)
    assert problem is None, f"{page}: {problem}"


@pytest.mark.parametrize(("page", "dotted"), DOTTED, ids=[f"{p}:{d}" for p, d in DOTTED])
def test_every_dotted_name_in_prose_resolves(page, dotted):
    resolve(dotted)


@pytest.mark.parametrize(("page", "dotted"), DIRECTIVES, ids=[f"{p}:{d}" for p, d in DIRECTIVES])
def test_every_api_reference_directive_resolves(page, dotted):
    resolve(dotted)


def test_the_check_fails_on_a_submodule_or_a_missing_name():
    """What the checks above say about the two errors the README once had, and a directive gone stale."""
    bad = "Analysis API (`rd_train.mechanism`): `effective_weights(decode)`, `no_such_name`.\n\n"
    problems = [prose_api_problem(module, name) for module, name in prose_api_lists(bad)]
    assert problems == ["rd_train.mechanism.effective_weights is a submodule, not the documented API",
                        "rd_train.mechanism.no_such_name does not exist"]
    with pytest.raises(AttributeError):
        resolve(api_directives("# API\n\n::: rd_theory.no_such_module\n")[0])
    refs = block_references("from rd_train.training.losses import no_such_loss\nimport rd_theory\n"
                            "rd_theory.nope\n"
                            "from rd_train import analysis\nanalysis(1)\n")
    failed = sorted(label for label, _, value in refs if isinstance(value, Exception))
    assert failed == ["analysis(...)", "no_such_loss", "nope"]
