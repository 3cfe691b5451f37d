"""benchmarks/gpu.sh works before a GPU is lent: its --dry-run runs the same invocation on
the CPU at a tiny size and writes one table in which every row the GPU run needs holds a
measurement: JAX bfloat16 and float32 with the pmap and the mesh driver (training and
inference), PyTorch bf16 autocast when torch is installed, and the training batch sweep.
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


def _rows(markdown: str) -> dict[tuple[str, str, str], list[str]]:
    """Table rows keyed by (variant, mode, batch)."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 4 and cells[1] in ("train", "infer"):
            rows[(cells[0], cells[1], cells[2])] = cells
    return rows


@pytest.mark.slow
def test_gpu_script_dry_run_measures_every_variant_on_the_cpu(tmp_path):
    out = tmp_path / "results" / "dry.md"
    result = _run("--dry-run", env_extra={"OUT": str(out), "TMPDIR": str(tmp_path)}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("## DRY RUN on the CPU")
    assert f"results: {out}" in result.stdout
    assert "--size 32 --widths tiny" in text and "--matrix-batch 2 --batches 2 4" in text
    assert text.count("| variant |") == 1  # one table
    rows = _rows(text)
    expected = [
        (f"jax {dtype} {driver} up=einsum conv=xla", mode, "2")
        for dtype in ("bfloat16", "float32")
        for driver in ("pmap", "mesh")
        for mode in ("train", "infer")
    ]
    expected.append(("jax bfloat16 pmap up=einsum conv=xla", "train", "4"))  # the sweep
    if importlib.util.find_spec("torch") is not None:
        torch_eager = "torch eager bf16-amp channels_last"
        expected += [(torch_eager, "train", "2"), (torch_eager, "infer", "2")]
        expected.append((torch_eager, "train", "4"))
    else:
        assert "torch is not installed: JAX variants only" in text
    assert not any("onnxruntime" in variant for variant, _, _ in rows)
    assert set(rows) == set(expected), sorted(rows)
    header = next(line for line in text.splitlines() if line.startswith("| variant |"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    for key in expected:
        cells = dict(zip(columns, rows[key], strict=True))
        assert re.fullmatch(r"[0-9.]+", cells["img/s"]) and float(cells["img/s"]) > 0, cells
        if key[0].startswith("jax"):  # MFU against the CPU's measured matmul peak
            assert re.fullmatch(r"[0-9.]+", cells["MFU %"]), cells
    # Nothing was written into the repository's results folder.
    assert not list((REPO_ROOT / "benchmarks" / "results").glob("gpu-dryrun-*"))


def test_a_row_without_a_measurement_fails_the_table_and_out_of_memory_does_not():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import gpu_table
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))

    def result(label, times, error=None):
        return {"label": label, "mode": "train", "batch": 256, "times": times, "error": error}

    results = [
        result("measured", [0.5]),
        result("jax oom", [], "XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying"),
        result("torch oom", [], "OutOfMemoryError: CUDA out of memory. Tried to allocate"),
        result("broken", [], "ValueError: mesh driver failed"),
        result("silent", []),
    ]
    assert gpu_table.missing_rows(results) == [
        "broken train batch 256: ValueError: mesh driver failed",
        "silent train batch 256: no timed steps",
    ]


def test_gpu_script_rejects_unknown_arguments_and_has_help():
    result = _run("--dryrun", env_extra={}, timeout=60)
    assert result.returncode == 2
    assert "unknown argument --dryrun" in result.stderr
    result = _run("--help", env_extra={}, timeout=60)
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "H100" in result.stdout
