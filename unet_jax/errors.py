"""Bad input, and the exit codes every command line ends with.

A `UserError` is raised where input is checked (a flag, a config value, a data set, a
workdir, an image file); its message names the file, field or value. The command lines
(:mod:`unet_jax.cli`) turn exactly these into exit code 2 with a one-line message;
any other exception is a bug and keeps its traceback (exit code 1). The concrete errors
keep a builtin base too (``ConfigError`` is a ``ValueError``), for callers that catch those.

This module imports nothing of this project, so every layer can raise these.
"""

import importlib
from types import ModuleType

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_CHECKPOINT = 4
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143  # 128 + SIGTERM: stopped early, state saved, run again

# Set (to anything) to see every library log line and background-thread error (absl,
# orbax, TensorStore, TFDS) that the commands otherwise keep quiet.
VERBOSE_ENV_VAR = "UNET_JAX_VERBOSE"


class UserError(Exception):
    """Bad input: the message names the offending file, field or value (exit code 2)."""


class PreemptedError(Exception):
    """SIGTERM stopped the run where it could not save (exit code 143, as a saved stop)."""


class InferenceError(UserError):
    """A workdir, checkpoint, split or input that cannot be used; the message says which."""


class FlagError(UserError, ValueError):
    """A command-line flag value (or combination of flags) that cannot work."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names field, value and what is allowed."""


def import_optional(module: str, error: type[Exception], message: str) -> ModuleType:
    """Imports an optional dependency, or raises ``error(message)`` (say how to install it).

    Args:
      module: e.g. ``"onnxruntime.quantization"``.
      error: the exception to raise when it is missing.
      message: its message.

    Returns:
      The module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(message) from e
