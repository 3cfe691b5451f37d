"""Exit codes shared by every command line (train.py, eval.py, predict, export).

One table maps the exceptions a run can end with to the documented exit codes (README,
"Exit codes"); :func:`run` applies it and prints a one-line ``error: ...`` message instead
of a traceback. Only exceptions outside the table (bugs) keep their traceback, with code 1.
Set ``UNET_JAX_TRACEBACK=1`` to see the traceback of a mapped error too.
"""

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import flags

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_CHECKPOINT = 4
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143

TRACEBACK_ENV_VAR = "UNET_JAX_TRACEBACK"

# Builtin bases of what bad input raises here: data sets (DataError is a ValueError,
# ManualDownloadMissingError a FileNotFoundError), workdirs and options (InferenceError
# subclasses these too), config values, and libraries that check arguments (grain, optax).
_BAD_INPUT_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


def exit_code(error: BaseException) -> int:
    """The documented exit code for an exception (first matching row wins).

    Args:
      error: what the command raised.

    Returns:
      3 for a non-finite loss, 4 for a checkpoint that cannot be read, written or used, 2
      for bad input (configuration, data set, workdir, paths, arguments), 130 for Ctrl-C,
      1 for anything else.
    """
    # Imported here: orbax and grain are heavy, and --help must stay fast.
    from unet_jax.run.checkpointing import CheckpointError, IncompatibleCheckpointError
    from unet_jax.run.loading import InferenceError

    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, FloatingPointError):
        return EXIT_NON_FINITE
    if isinstance(error, CheckpointError | IncompatibleCheckpointError):
        return EXIT_CHECKPOINT
    if isinstance(error, (InferenceError, *_BAD_INPUT_TYPES)):
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
    try:
        code = main()
    except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - mapped or re-shown below
        code = exit_code(e)
        if code == EXIT_UNEXPECTED or os.environ.get(TRACEBACK_ENV_VAR):
            traceback.print_exc()
        print(f"\n{error_message(e)}", file=sys.stderr)
        return code
    return EXIT_OK if code is None else code


def absl_main(main: Callable[[list[str]], int | None]) -> Callable[[list[str]], int]:
    """Wraps an absl ``main(argv)`` with :func:`run`, for ``app.run``."""
    return lambda argv: run(lambda: main(argv))


def parse_absl_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with code 2 and a one-line message for a bad flag or config value.

    Pass as ``app.run(main, flags_parser=parse_absl_flags)`` (absl itself exits with 1).

    Args:
      argv: the command line.

    Returns:
      The arguments left after the flags.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}\nPass --help to see the flags.", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
