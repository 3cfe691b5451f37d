"""The command lines of eval.py, ``python -m unet_jax.predict`` and ``python -m unet_jax.export``.

One framework for the three: argparse, its flags generated from an option dataclass
(``unet_jax.deploy.options``), so an option has one name, one default and one help text
in every command. ``--workdir`` and ``--out`` are defined here once. Booleans are
``--NAME`` (on) and ``--NAME=false`` (off); lists are comma-separated. A bad flag prints
one ``error: ...`` line and exits with 2 (the exit-code table of ``unet_jax.cli``).

train.py keeps absl: its ``--config`` and ``--config.FIELD=VALUE`` are ml_collections'
``config_flags``.

Light (no JAX import), so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from unet_jax.deploy.options import build, flat_fields
from unet_jax.errors import EXIT_BAD_INPUT

# The spellings of a boolean's value after ``--NAME=`` (absl's, which eval.py used).
TRUE_WORDS = ("true", "True", "TRUE", "t", "1", "yes")
FALSE_WORDS = ("false", "False", "FALSE", "f", "0", "no")
WORKDIR_HELP = "Training run directory."


class CommandParser(argparse.ArgumentParser):
    """argparse with one ``error: ...`` line and exit code 2 for a bad command line."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self._explain(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    def _explain(self, message: str) -> str:
        """absl's ``--noNAME`` is gone: name its spelling now."""
        for word in message.split():
            off = f"--{word[len('--no') :]}=false"
            if word.startswith("--no") and off in self._option_string_actions:
                return f"{word} is spelt {off} now"
        return message


def command_parser(
    options: type,
    *,
    prog: str,
    description: str,
    out_help: str,
    workdir_required: bool = True,
    out_required: bool = True,
) -> CommandParser:
    """A command's parser: ``--workdir``, ``--out`` and the flags of ``options``.

    Args:
      options: the command's option dataclass (nested ones are flattened).
      prog: how the command is typed, e.g. ``python eval.py``.
      description: what ``--help`` says first (shown as written).
      out_help: what ``--out`` names for this command.
      workdir_required: whether ``--workdir`` must be given (predict: not with --onnx).
      out_required: whether ``--out`` must be given (eval.py has a default).

    Returns:
      The parser; add positional arguments before parsing if the command has any.
    """
    parser = CommandParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # one spelling per flag, as absl
    )
    parser.add_argument("--workdir", required=workdir_required, help=WORKDIR_HELP)
    parser.add_argument("--out", required=out_required, help=out_help)
    add_arguments(parser, options)
    return parser


def run_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace], int | None],
) -> int:
    """Parses ``argv`` and runs ``body`` under the exit-code table of ``unet_jax.cli``.

    Args:
      parser: from :func:`command_parser`.
      argv: the arguments (None: ``sys.argv[1:]``).
      body: the command, given the parsed flags; returns its exit code (None: 0).

    Returns:
      The exit code.
    """
    args = parser.parse_args(argv)
    from unet_jax import cli

    return cli.run(lambda: body(args))


def _kind(field: dataclasses.Field) -> str:
    text = str(field.type).replace(" ", "")
    for prefix, kind in (("bool", "bool"), ("int", "int"), ("float", "float")):
        if text.startswith(prefix):
            return kind
    if text.startswith("tuple[float"):
        return "floats"
    if text.startswith("tuple[str"):
        return "strs"
    return "str"


def _strings(text: str) -> tuple[str, ...]:
    """A comma-separated list flag's items."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _numbers(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers, e.g. ``--tta_scales=0.75,1,1.25``."""
    try:
        return tuple(float(item) for item in _strings(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None


_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "floats": _numbers,
    "strs": _strings,
}


def _help(field: dataclasses.Field) -> str:
    default = field.default
    if isinstance(default, tuple):
        default = ",".join(str(v) for v in default)
    if _kind(field) == "bool":
        off = f" (--{field.name}=false to turn off)" if default is not False else ""
        return field.metadata["help"] + off
    shown = "" if default is None else f" (default: {default})"
    return field.metadata["help"] + shown


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple = ()) -> None:
    """Adds the options of ``cls`` as flags.

    Booleans are ``--NAME`` and ``--NAME=true|false`` (also t/f, 1/0, yes/no); lists are
    comma-separated.

    Args:
      parser: the command's parser.
      cls: an options dataclass (nested ones are flattened).
      skip: field names to leave out.
    """
    for field in flat_fields(cls):
        name, kind = field.name, _kind(field)
        if name in skip:
            continue
        if kind == "bool":
            common = dict(dest=name, action="store_const", default=field.default)
            parser.add_argument(f"--{name}", const=True, help=_help(field), **common)
            # argparse matches a whole option string before splitting at "=": the values
            # of a boolean are option strings of their own, hidden from --help.
            for words, value in ((TRUE_WORDS, True), (FALSE_WORDS, False)):
                spelt = [f"--{name}={word}" for word in words]
                parser.add_argument(*spelt, const=value, help=argparse.SUPPRESS, **common)
            continue
        parser.add_argument(
            f"--{name}",
            type=_TYPES[kind],
            default=field.default,
            choices=field.metadata["choices"],
            help=_help(field),
        )


def from_flags(cls: type, values: Any, *, skip: tuple = ()) -> Any:
    """The options of ``cls`` that parsed flags (an argparse namespace) ask for."""
    flat = {f.name: getattr(values, f.name) for f in flat_fields(cls) if f.name not in skip}
    return build(cls, **flat)
