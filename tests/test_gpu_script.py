"""benchmarks/gpu.sh works before a GPU is lent: its --dry-run runs the same invocation on
the CPU at a tiny size (JAX bf16 einsum and transpose variants, training and inference,
and PyTorch bf16 autocast when torch is installed) and every row holds a measurement.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import JAX_CACHE_DIR, REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, env_extra: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Runs ``bash benchmarks/gpu.sh ARGS`` with this interpreter as its PYTHON.

    Args:
      *args: the script's arguments.
      env_extra: environment variables set on top of this process's.
      timeout: seconds before the run is killed (a hang fails the test).

    Returns:
      The completed process, output captured as text.
    """
    env = dict(os.environ)
    env.update(
        PYTHON=sys.executable,
        # The workers share the test suite's compilation cache (a rerun compiles nothing).
        JAX_COMPILATION_CACHE_DIR=JAX_CACHE_DIR,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        **env_extra,
    )
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """Table rows keyed by (variant, mode)."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 4 and cells[1] in ("train", "infer"):
            rows[(cells[0], cells[1])] = cells
    return rows


@pytest.mark.slow
def test_gpu_script_dry_run_measures_every_variant_on_the_cpu(tmp_path):
    out = tmp_path / "results" / "dry.md"
    result = _run("--dry-run", env_extra={"OUT": str(out), "TMPDIR": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("## DRY RUN on the CPU")
    assert f"results: {out}" in result.stdout
    assert "--size 32 --widths tiny" in text and "--schedule sequential" in text
    rows = _rows(text)
    expected = [f"jax bfloat16 pmap up={up} conv=xla" for up in ("einsum", "transpose")]
    if importlib.util.find_spec("torch") is not None:
        expected.append("torch eager bf16-amp channels_last")
        assert "--device cpu --ort-threads" in text  # no ONNX Runtime variant
    else:
        assert "torch is not installed: JAX variants only" in text
    assert not any("onnxruntime" in variant for variant, _ in rows)
    for variant in expected:
        for mode in ("train", "infer"):
            cells = rows.get((variant, mode))
            assert cells, f"no {mode} row for {variant} in:\n{text}"
            batch, img_s = cells[2], cells[3]
            assert batch == "2"
            assert re.fullmatch(r"[0-9.]+", img_s) and float(img_s) > 0, cells
    # Nothing was written into the repository's results folder.
    assert not list((REPO_ROOT / "benchmarks" / "results").glob("gpu-dryrun-*"))


def test_gpu_script_rejects_unknown_arguments_and_has_help():
    result = _run("--dryrun", env_extra={}, timeout=60)
    assert result.returncode == 2
    assert "unknown argument --dryrun" in result.stderr
    result = _run("--help", env_extra={}, timeout=60)
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "H100" in result.stdout
