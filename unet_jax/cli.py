"""Exit codes shared by every command line (train.py, eval.py, predict, export).

One table maps the exceptions a run can end with to the documented exit codes (README,
"Exit codes"); :func:`run` applies it and prints a one-line ``error: ...`` message instead
of a traceback. Only exceptions outside the table (bugs) keep their traceback, with code 1.
Set ``UNET_JAX_TRACEBACK=1`` to see the traceback of a mapped error too.
"""

import ast
import functools
import logging
import os
import pathlib
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import flags
from ml_collections.config_flags import config_flags

from unet_jax import storage
from unet_jax.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHECKPOINT,
    EXIT_INTERRUPTED,
    EXIT_NON_FINITE,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_UNEXPECTED,
    VERBOSE_ENV_VAR,
    PreemptedError,
    UserError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CHECKPOINT",
    "EXIT_INTERRUPTED",
    "EXIT_NON_FINITE",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "EXIT_UNEXPECTED",
    "absl_main",
    "error_message",
    "exit_code",
    "parse_absl_flags",
    "run",
]

TRACEBACK_ENV_VAR = "UNET_JAX_TRACEBACK"

# A path named on a command line (workdir, data_dir, images, --out) that is missing or
# cannot be read: the operating system's message names it.
_PATH_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
# ml_collections checks a --config.FIELD=VALUE override while absl parses the flags: what it
# raises there is about the override, never about this project's code.
_CONFIG_OVERRIDE_ERRORS: tuple[type[BaseException], ...] = (
    AttributeError,
    KeyError,
    TypeError,
    ValueError,
)


def exit_code(error: BaseException) -> int:
    """The documented exit code for an exception (first matching row wins).

    Args:
      error: what the command raised.

    Returns:
      3 for a non-finite loss, 4 for a checkpoint that cannot be read, written or used, 2
      for bad input (a `UserError`, or a path that cannot be opened), 130 for Ctrl-C, 143
      for a SIGTERM that could not wait for a save, 1 for anything else (a bug: its
      traceback is printed).
    """
    # Imported here: orbax is heavy, and --help must stay fast.
    from unet_jax.run.checkpointing import CheckpointError, IncompatibleCheckpointError

    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, PreemptedError):
        return EXIT_PREEMPTED
    if isinstance(error, FloatingPointError):
        return EXIT_NON_FINITE
    if isinstance(error, CheckpointError | IncompatibleCheckpointError):
        return EXIT_CHECKPOINT
    if storage.unreachable(error):  # what was saved before is intact: run again
        return EXIT_CHECKPOINT
    if isinstance(error, (UserError, *_PATH_ERRORS)):
        return EXIT_BAD_INPUT
    return EXIT_UNEXPECTED


def error_message(error: BaseException) -> str:
    """``error: <message>``; the type is named for exceptions raised outside this project.

    Args:
      error: what the command raised.

    Returns:
      The message (this project's errors say what is wrong; a library's ValueError may
      need its type to be understood).
    """
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    own = type(error).__module__.split(".")[0] in ("unet_jax", "datasets")
    text = str(error) or type(error).__name__
    if storage.unreachable(error):
        return (
            f"error: cloud storage could not be reached ({text}); the checkpoints saved before "
            "are intact: run the same command again when it is back to resume"
        )
    if own or isinstance(error, FloatingPointError):
        return f"error: {text}"
    return f"error: {type(error).__name__}: {text}"


def run(main: Callable[[], int | None]) -> int:
    """Calls ``main`` and turns an exception into its exit code and a one-line message.

    Args:
      main: the command; returns its exit code (None means 0).

    Returns:
      ``main``'s exit code, or the code of the exception it raised (see :func:`exit_code`).
    """
    quiet_background_noise()
    try:
        code = main()
    except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - mapped or re-shown below
        code = exit_code(e)
        if code == EXIT_UNEXPECTED or os.environ.get(TRACEBACK_ENV_VAR):
            traceback.print_exc()
        print(f"\n{error_message(e)}", file=sys.stderr)
        return code
    return EXIT_OK if code is None else code


_QUIET_INSTALLED: list[bool] = []


def quiet_background_noise() -> None:
    """Only what concerns the run: no library warnings, one line per warning of this
    project, no "Event loop is closed" at exit.

    TensorStore's and orbax's asyncio loops can be collected after they were closed,
    which Python reports as an ignored ``RuntimeError: Event loop is closed`` traceback,
    once per loop; they say nothing about the run. ``UNET_JAX_VERBOSE=1`` keeps them.
    """
    if os.environ.get(VERBOSE_ENV_VAR) or _QUIET_INSTALLED:
        return
    _QUIET_INSTALLED.append(True)  # once per process: commands run() may be called again
    # The libraries' warnings (TFDS's "Using custom data configuration", orbax's missing
    # metadata of older checkpoints, ...) are about their internals, not the run's input.
    logging.getLogger("absl").addFilter(lambda record: record.levelno >= logging.ERROR)
    # gcsfs logs each retry of an unreachable bucket with its traceback; the command ends
    # with one line saying so instead (unet_jax.storage.unreachable).
    logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
    default_hook = sys.unraisablehook

    def unraisable(info) -> None:
        if isinstance(info.exc_value, RuntimeError) and "Event loop is closed" in str(
            info.exc_value
        ):
            return
        default_hook(info)

    sys.unraisablehook = unraisable
    default_format = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        if _is_own_file(filename):
            return f"warning: {message}\n"
        return default_format(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


def _is_own_file(filename: str) -> bool:
    parts = pathlib.PurePath(filename).parts
    return "site-packages" not in parts and bool({"unet_jax", "datasets"} & set(parts))


def absl_main(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int]:
    """Wraps an absl ``main(argv)`` with :func:`run`, for ``app.run``."""
    return lambda argv: run(lambda: main(argv))


def _raised_by(error: BaseException, package: str) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in ``package``'s files."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and package in pathlib.PurePath(frames[-1].filename).parts


def config_override_message(error: BaseException, argv: Sequence[str]) -> str:
    """One line for an override that ml_collections refused, naming the override.

    Args:
      error: what ml_collections raised, e.g. ``AttributeError`` for a field that does not
        exist (its message is the repr of a KeyError with a "Did you mean" line).
      argv: the command line, to name the ``--config.FIELD=VALUE`` argument at fault.

    Returns:
      ``error: --config.model.featurs=(8,16): no field 'featurs'; Did you mean ...?``
    """
    field, detail = _missing_field(error)
    overrides = [a for a in argv if a.startswith("--config.")]
    named = [a for a in overrides if field and field in a.partition("=")[0].split(".")]
    where = (named or overrides or ["--config"])[0]
    return f"error: {where}: {detail}"


def _missing_field(error: BaseException) -> tuple[str, str]:
    """``(field, detail)`` of what ml_collections raised, its KeyError repr unquoted.

    Returns:
      e.g. ``("featurs", 'no field \'featurs\'; Did you mean "features" ...?')``.
    """
    text = str(error)
    try:  # AttributeError(KeyError(...)) carries the KeyError's repr: unquote it
        unquoted = ast.literal_eval(text)
        text = unquoted if isinstance(unquoted, str) else text
    except (ValueError, SyntaxError):
        pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    field = lines[0].strip("'\"") if lines else ""
    detail = "; ".join(lines)
    if isinstance(error, AttributeError | KeyError) and field:
        detail = "; ".join([f"no field {field!r}", *lines[1:]])
    return field, detail


def parse_absl_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with code 2 and a one-line message for a bad flag, config file
    or config value.

    Pass as ``app.run(main, flags_parser=parse_absl_flags)`` (absl itself exits with 1).

    Args:
      argv: the command line.

    Returns:
      The arguments left after the flags.
    """
    if _asks_for_help(argv):
        _print_help(argv)
        sys.exit(EXIT_OK)
    config_files = _config_file_arguments(argv)
    for name, path in config_files:
        if not pathlib.Path(path).is_file():
            _bad_input(f"error: --{name} {path}: no such config file")
    try:
        return flags.FLAGS(argv)
    except Exception as e:
        if (message := config_file_message(e, config_files)) is not None:
            _bad_input(message)
        if isinstance(e, flags.Error):
            _bad_input(f"error: {e}\nPass --help to see the flags.")
        if isinstance(e, _CONFIG_OVERRIDE_ERRORS) and _raised_by(e, "ml_collections"):
            _bad_input(config_override_message(e, argv))
        raise


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")


def _asks_for_help(argv: Sequence[str]) -> bool:
    args = list(argv[1:])
    args = args[: args.index("--")] if "--" in args else args
    return any(arg in HELP_FLAGS for arg in args)


def _print_help(argv: Sequence[str]) -> None:
    """The command's docstring, its flags, and every field of the config it would load.

    absl prints its help and exits with 1 and knows no ``-h``; this exits with 0, and lists
    the config fields (``--config.FIELD=VALUE``) with their defaults, from the config file
    on the command line (the command's default one otherwise).
    """
    rest = [arg for arg in argv if arg not in HELP_FLAGS]
    try:
        flags.FLAGS(rest)
    except Exception:  # noqa: BLE001 - help is still printed; the run reports the error
        flags.FLAGS.mark_as_parsed()
    main = sys.modules["__main__"]
    print((main.__doc__ or "").strip() + "\n")
    print(flags.FLAGS.main_module_help())
    for name in flags.FLAGS:
        value = flags.FLAGS[name].value
        if isinstance(flags.FLAGS[name].parser, config_flags.ConfigFileFlagParser) and value:
            print(f"\nConfig fields (--{name}.FIELD=VALUE; docs/CONFIG.md), this config's values:")
            for field, default in _flat_fields(value.to_dict()):
                print(f"  --{name}.{field}={default!r}")


def _flat_fields(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for key, value in tree.items():
        if isinstance(value, dict):
            found += _flat_fields(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def _bad_input(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _config_file_arguments(argv: Sequence[str]) -> list[tuple[str, str]]:
    """``(flag name, file)`` of every config-file flag given (``--config FILE[:ARG]``)."""
    names = {
        name
        for name in flags.FLAGS
        if isinstance(flags.FLAGS[name].parser, config_flags.ConfigFileFlagParser)
    }
    found = []
    args = list(argv[1:])
    for i, arg in enumerate(args):
        if arg == "--":
            break
        key, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or key not in names:
            continue
        if not eq:
            if i + 1 >= len(args):
                continue  # absl reports the missing value
            value = args[i + 1]
        found.append((key, value.split(":", 1)[0]))
    return found


def config_file_message(
    error: BaseException, config_files: Sequence[tuple[str, str]]
) -> str | None:
    """One line for a config file that could not be loaded, or None if ``error`` is not that.

    Args:
      error: what flag parsing raised.
      config_files: ``(flag name, file)`` of the config files on the command line.

    Returns:
      ``error: --config FILE: line 3: SyntaxError: invalid syntax``, or None.
    """
    all_frames = traceback.extract_tb(error.__traceback__)
    for name, path in config_files:
        resolved = pathlib.Path(path).resolve()
        is_config = functools.partial(_same_file, resolved)
        frames = [f for f in all_frames if is_config(f.filename)]
        text = str(error).strip()
        if isinstance(error, SyntaxError) and is_config(error.filename):
            detail = f"line {error.lineno}: SyntaxError: {error.msg}"
        elif frames and _raised_by(error, "ml_collections"):
            detail = f"line {frames[-1].lineno}: {_missing_field(error)[1]}"  # a field's typo
        elif frames:
            detail = f"line {frames[-1].lineno}: {type(error).__name__}: {text}"
        elif "Error whilst parsing config file" in text and str(resolved) in text:
            # ml_collections re-raises get_config's TypeError/ValueError with the trace as text.
            lines = [line for line in text.splitlines() if line.strip()]
            at = [line for line in lines if str(resolved) in line or path in line]
            where = at[-1].strip().split(", ")[1] + ": " if at and ", line" in at[-1] else ""
            detail = where + lines[-1].strip()
        elif any(f.name == "parse" and "get_config" in (f.line or "") for f in all_frames):
            detail = (
                "defines no get_config()"
                if isinstance(error, AttributeError) and "'get_config'" in text
                else f"{type(error).__name__}: {text}"
            )
        else:
            continue
        return f"error: --{name} {path}: {detail}"
    return None


def _same_file(path: pathlib.Path, filename: str | None) -> bool:
    return bool(filename) and pathlib.Path(filename).resolve() == path
