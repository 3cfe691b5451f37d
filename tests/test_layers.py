"""Each subpackage imports only from the layers below it (static: every import statement).

model and data at the bottom, then a run's workdir, deploying a run, scoring, training; the
public API (``unet_jax.load``, ``unet_jax.inference``) and the command lines on top. The
data set builders (``datasets/``) may use only the bottom of the library.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# What each part of unet_jax may import (besides itself and the leaf modules below).
# The exceptions with an exit code, and dotted config fields: import nothing of this project;
# the parser of paths and cloud storage URLs imports only errors.
LEAVES = {"errors", "config_fields", "storage"}
# The exit-code table of the commands, and which launcher started a process (both import
# only errors).
BASE = LEAVES | {"cli", "launch"}
ALLOWED = {
    "errors": set(),
    "config_fields": set(),
    "storage": {"errors"},
    "launch": LEAVES,
    "cli": LEAVES | {"run"},  # maps the checkpoint errors to exit code 4
    # The config files take their defaults from their owners in data (light modules only:
    # test_the_config_files_stay_light).
    "configs": LEAVES | {"data"},
    "model": LEAVES,
    "data": LEAVES,
    "run": LEAVES | {"model", "data"},
    "deploy": BASE | {"model", "data", "run"},
    "evaluation": LEAVES | {"model", "data", "run", "deploy"},
    # deploy: the start-up check of the stored inference recipe
    "train": LEAVES | {"launch", "model", "data", "run", "deploy", "evaluation"},
}
TOP = {"__init__", "inference", "predict", "export"}  # may import every layer
DATASETS_ALLOWED = LEAVES | {"data"}


def _part(module: str) -> str | None:
    """``unet_jax.train.loop`` -> ``train``; None outside unet_jax."""
    parts = module.split(".")
    if parts[0] != "unet_jax":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, function-level ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "unet_jax":  # from unet_jax import train -> unet_jax.train
                found += [(node.lineno, f"unet_jax.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def _violations(files, allowed_for) -> list[str]:
    bad = []
    for path in files:
        allowed, own = allowed_for(path)
        for line, module in _imports(path):
            part = _part(module)
            if part is not None and part != own and part not in allowed:
                bad.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    return bad


def _library_part(path: pathlib.Path) -> str:
    rel = path.relative_to(REPO_ROOT / "unet_jax")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_part_of_the_library_has_a_layer():
    parts = {_library_part(p) for p in (REPO_ROOT / "unet_jax").rglob("*.py")}
    assert parts <= set(ALLOWED) | TOP, sorted(parts - set(ALLOWED) - TOP)


def test_subpackages_import_only_from_the_layers_below():
    def allowed_for(path):
        part = _library_part(path)
        return (set(ALLOWED) | TOP if part in TOP else ALLOWED[part]), part

    files = sorted((REPO_ROOT / "unet_jax").rglob("*.py"))
    assert _violations(files, allowed_for) == []


# The command of ``python -m unet_jax.export`` finds the builders for the library, as the
# top-level train.py and eval.py do; no other file of the package imports them.
BUILDER_IMPORTERS = {"unet_jax/export/__main__.py"}


def test_the_library_never_imports_the_data_set_builders():
    bad = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {module}"
        for path in sorted((REPO_ROOT / "unet_jax").rglob("*.py"))
        if str(path.relative_to(REPO_ROOT)) not in BUILDER_IMPORTERS
        for line, module in _imports(path)
        if module.split(".")[0] == "datasets"
    ]
    assert bad == []


def test_data_set_builders_use_only_the_bottom_of_the_library():
    files = sorted((REPO_ROOT / "datasets").rglob("*.py"))
    assert _violations(files, lambda path: (DATASETS_ALLOWED, None)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from unet_jax.train import loop\n", "imports unet_jax.train"),
        ("def f():\n    from unet_jax import deploy\n", "imports unet_jax.deploy"),
        ("import unet_jax.evaluation.metrics\n", "imports unet_jax.evaluation.metrics"),
    ],
)
def test_the_check_sees_every_form_of_import(tmp_path, monkeypatch, source, expected):
    # The oracle for the checker itself: a model module that imports upwards is caught.
    monkeypatch.setattr(f"{__name__}.REPO_ROOT", tmp_path)
    module = tmp_path / "unet_jax" / "model" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    (violation,) = _violations([module], lambda path: (ALLOWED["model"], "model"))
    assert violation.endswith(expected) and violation.startswith("unet_jax/model/bad.py:")


def test_the_config_files_stay_light():
    # config_flags loads them while parsing flags, before JAX may start: no JAX, grain or
    # numpy import (the defaults they read from data live in light modules).
    code = (
        "import sys\n"
        "from unet_jax.configs import auto, default, demo, folder, tiny\n"
        "print(sorted(m for m in ('jax', 'grain', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
