"""What a run records about itself: resolved config, versions, devices, git commit."""

import datetime
import importlib.metadata
import json
import pathlib
import subprocess
import sys
from typing import Any

import jax
import ml_collections

from unet_jax import storage
from unet_jax.run.workdir import Workdir

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "grain",
    "numpy",
    "ml_collections",
)


def git_commit(path: str | pathlib.Path = pathlib.Path(__file__).parent) -> str | None:
    """The repository's HEAD commit (with "-dirty" for uncommitted changes), or None."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def collect() -> dict[str, Any]:
    """Versions, device kind/count, process count, commit, command line and time."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "versions": versions,
        "platform": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "git_commit": git_commit(),
    }


def write(
    workdir: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Writes ``config.json`` and ``run_info.json`` (and appends to ``run_history.jsonl``).

    Args:
      workdir: the run directory.
      config: the resolved run config.
      extra: JSON-ready fields added to the run info (e.g. ``init_from``: the source run).
    """
    layout = Workdir.of(workdir)
    layout.config.write_text(config.to_json_best_effort(indent=2) + "\n")
    info = {**collect(), **(extra or {})}
    layout.run_info.write_text(json.dumps(info, indent=2) + "\n")
    line = json.dumps(info) + "\n"
    if storage.is_url(layout.root):  # a bucket has no append: the object is replaced whole
        before = layout.run_history.read_text() if layout.run_history.exists() else ""
        layout.run_history.write_text(before + line)
    else:
        with layout.run_history.open("a") as f:
            f.write(line)
