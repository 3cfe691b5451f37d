"""The reference tables of docs/ against the code they describe.

docs/COMMANDS.md's flag table is generated from the three commands' parsers (this test
fails with the table it expects: paste it in); docs/CONFIG.md's field table is checked
field by field against ``unet_jax/configs/default.py``.
"""

import argparse
import importlib
import re
import sys

import pytest

from tests.conftest import REPO_ROOT
from unet_jax.configs import default

DOCS = REPO_ROOT / "docs"
CONDITION_FIELD = re.compile(r"augment\.conditions\.[a-z_]+\.")
DEFAULT_IN_HELP = re.compile(r" \(default: [^()]*\)$")  # the table has its column


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The parsers of eval.py, predict and export, built as the commands build them."""
    sys.path.insert(0, str(REPO_ROOT))
    try:
        eval_py = importlib.import_module("eval")
    finally:
        sys.path.remove(str(REPO_ROOT))
    from unet_jax.deploy import export, predict

    return {"eval": eval_py._parser(), "predict": predict._parser(), "export": export._parser()}


def _shown_default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    value = action.default
    if value is None:
        return "the run's recipe" if action.dest in RECIPE_DESTS else "none"
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


RECIPE_DESTS = ("tta_flip", "tta_scales", "adapt_bn", "adapt_momentum", "scale", "band")


def flags_table() -> str:
    """One row per flag and help text: the commands that have it, default, help."""
    rows: dict[tuple[str, str], dict] = {}
    for command, parser in _parsers().items():
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = action.option_strings[0]
            if flag in ("-h", "--help"):
                continue
            choices = f" One of: {', '.join(action.choices)}." if action.choices else ""
            text = DEFAULT_IN_HELP.sub("", action.help or "") + choices
            key = (flag, _shown_default(action), text)
            rows.setdefault(key, []).append(command)
    lines = ["| flag | commands | default | what |", "|---|---|---|---|"]
    for (flag, shown, text), commands in rows.items():
        text = text.replace("|", "\\|")
        lines.append(f"| `{flag}` | {', '.join(commands)} | {shown} | {text} |")
    return "\n".join(lines)


def _block(text: str, marker: str) -> str:
    start = text.index(f"<!-- {marker} -->\n") + len(f"<!-- {marker} -->\n")
    return text[start : text.index("<!-- end -->", start)].strip()


def test_the_commands_flag_table_is_generated_from_the_parsers():
    documented = _block((DOCS / "COMMANDS.md").read_text(), "generated: command flags")
    expected = flags_table()
    assert documented == expected, f"docs/COMMANDS.md's table should be:\n{expected}"


def _flat(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _code_default(value) -> str:
    return "None" if value is None else str(value)


def test_the_config_field_table_names_every_field_with_its_default():
    rows = _block((DOCS / "CONFIG.md").read_text(), "checked: config fields").splitlines()[2:]
    documented = {}
    for row in rows:
        field, shown = re.match(r"\| `([^`]+)` \| `([^`]*)` \|", row).groups()
        documented[field] = shown
    code = {}
    for field, value in _flat(default.get_config().to_dict()):
        code[CONDITION_FIELD.sub("augment.conditions.<name>.", field)] = _code_default(value)
    assert list(documented) == list(dict.fromkeys(documented))  # each field once
    assert sorted(documented) == sorted(code)
    assert {f: documented[f] for f in code if documented[f] != code[f]} == {}


@pytest.mark.parametrize("name", ["folder", "auto", "carla_real"])
def test_the_fields_other_configs_add_are_theirs(name):
    table = (DOCS / "CONFIG.md").read_text().split("## Fields other configs add")[1]
    config = importlib.import_module(f"unet_jax.configs.{name}").get_config()
    for row in table.splitlines():
        if f"`{name}.py`" in row:
            for field in re.findall(r"`([a-z_]+)`", row.split("|")[1]):
                assert field in config, f"{field} is not set by {name}.py"


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Tests\n", 1)[1].split("\n## ", 1)[0]
    (command,) = re.findall(r"```bash\n(.+?)\n```", section)
    assert command in (REPO_ROOT / ".ci" / "run").read_text()
