"""Running tests/train_worker.py processes and reading what they wrote."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "train_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(out: pathlib.Path, workdir: pathlib.Path, *extra: str) -> subprocess.Popen:
    """Starts one worker process (stdout and stderr captured together)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, str(WORKER), "--out", str(out), "--workdir", str(workdir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_script(
    *argv: str, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python ARGV...`` in the repository root, output captured as text.

    Args:
      argv: the script and its arguments.
      timeout: seconds.
      env: variables added to this process' environment.
    """
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def load_params(out: pathlib.Path) -> tuple[list[np.ndarray], dict]:
    params = np.load(out / "params.npz")
    leaves = [params[f"p{i}"] for i in range(len(params.files))]
    return leaves, json.loads((out / "result.json").read_text())
