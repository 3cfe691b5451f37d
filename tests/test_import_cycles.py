"""No import cycle inside unet_jax, function-level imports included (static: the AST).

A cycle hidden in a function body still couples two modules both ways: neither can be
read, tested or moved without the other. Parent packages' ``__init__`` files, which Python
imports first, are not edges here (they import nothing at module level).
"""

import ast
import pathlib

import pytest

from tests.conftest import REPO_ROOT


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _edges(path: pathlib.Path, module: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports anywhere in it."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in known and name != module)
    return found


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
    """{module: the modules of the package under ``root`` that it imports}."""
    files = {_module_name(p, root): p for p in sorted((root / "unet_jax").rglob("*.py"))}
    known = set(files)
    return {module: _edges(path, module, known) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_library_has_no_import_cycle():
    assert cycles(import_graph(REPO_ROOT)) == []


@pytest.mark.parametrize(
    ("a_source", "cyclic"),
    [
        ("from unet_jax.pkg import b\n", True),
        ("def f():\n    from unet_jax.pkg.b import g\n", True),  # hidden in a function
        ("import unet_jax.pkg.b\n", True),
        ("from . import b\n", True),
        ("from .b import g\n", True),
        ("from unet_jax.pkg import c\n", False),  # c imports nothing back
    ],
)
def test_the_check_sees_cycles_through_every_form_of_import(tmp_path, a_source, cyclic):
    # The oracle for the checker itself: hand-made packages with and without a cycle.
    package = tmp_path / "unet_jax" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "unet_jax" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(a_source)
    (package / "b.py").write_text("def g():\n    from unet_jax.pkg import a\n")
    (package / "c.py").write_text("import numpy\n")
    expected = [["unet_jax.pkg.a", "unet_jax.pkg.b"]] if cyclic else []
    assert cycles(import_graph(tmp_path)) == expected


def test_a_longer_cycle_is_one_component(tmp_path):
    package = tmp_path / "unet_jax"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, target in (("x", "y"), ("y", "z"), ("z", "x"), ("w", "x")):
        (package / f"{name}.py").write_text(f"from unet_jax import {target}\n")
    assert cycles(import_graph(tmp_path)) == [["unet_jax.x", "unet_jax.y", "unet_jax.z"]]
