"""The code base is `ruff check` and `ruff format` clean (config in pyproject.toml)."""

import ast
import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args):
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


MAX_FUNCTION_LINES = 100


def long_functions(path, *, limit=MAX_FUNCTION_LINES):
    """``name (N lines)`` of each function or method in ``path`` longer than ``limit``
    lines, from its ``def`` (decorators excluded) to its last line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(
                    f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({lines} lines)"
                )
    return found


def test_no_function_is_over_100_lines():
    files = sorted((REPO_ROOT / "unet_jax").rglob("*.py"))
    assert [f for p in files for f in long_functions(p)] == []


def test_the_length_check_counts_every_line_of_a_function(tmp_path, monkeypatch):
    # The oracle: functions of known length, a nested one and a method among them.
    monkeypatch.setattr(f"{__name__}.REPO_ROOT", tmp_path)
    body = "    x = 1\n"
    source = (
        "def ok():\n"
        + body * 99  # 100 lines
        + "def long():\n"
        + body * 100  # 101 lines
        + "class C:\n    def method(self):\n"
        + ("    " + body) * 101  # 102 lines
    )
    module = tmp_path / "m.py"
    module.write_text(source)
    assert long_functions(module) == ["m.py:101 long (101 lines)", "m.py:203 method (102 lines)"]
