"""jax.export artifact: symbolic shapes, sidecar, and a consumer that never imports unet_jax.

Oracle: the live model (``make_apply_fn``) on the same inputs in this process.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from datasets.lyft_udacity.classes import CLASS_NAMES, PALETTE
from tests.conftest import REPO_ROOT
from tests.evaluation.test_eval import tiny_run
from unet_jax.deploy import export
from unet_jax.run.loading import load_run, make_apply_fn


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


# The consumer: unet_jax (and its submodules) cannot be imported at all.
CONSUMER = textwrap.dedent(
    """
    import sys
    sys.modules["unet_jax"] = None  # any `import unet_jax...` now raises ImportError
    import json
    import jax
    import numpy as np

    artifact, inputs, outputs = sys.argv[1:4]
    exported = jax.export.deserialize(bytearray(open(artifact, "rb").read()))
    side = json.load(open(artifact + ".json"))
    arrays = dict(np.load(inputs))
    results = {name: np.asarray(exported.call(x)) for name, x in arrays.items()}
    try:
        exported.call(np.zeros((1, side["input"]["size_multiple"] + 1, 8, 3), np.uint8))
        results["rejected"] = np.array(False)
    except Exception:  # noqa: BLE001 - jax raises a ValueError for the shape constraint
        results["rejected"] = np.array(True)
    np.savez(outputs, **results)
    loaded = [m for m, v in sys.modules.items() if m.split(".")[0] == "unet_jax" and v is not None]
    print("unet_jax modules:", loaded)
    """
)


def test_exported_model_runs_without_unet_jax(tiny, tmp_path):
    pytest.importorskip("flatbuffers", reason="jax.export serialisation needs flatbuffers")
    artifact, side = export.export_run(tiny.workdir, tmp_path / "model.jaxexport")
    assert side == tmp_path / "model.jaxexport.json"

    rng = np.random.default_rng(0)
    inputs = {
        "one_32x32": rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8),
        "three_12x20": rng.integers(0, 256, (3, 12, 20, 3), dtype=np.uint8),
        "two_64x8": rng.integers(0, 256, (2, 64, 8, 3), dtype=np.uint8),
    }
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "consumer.py").write_text(CONSUMER)
    result = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "consumer.py"),
            str(artifact),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "outputs.npz"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: nothing to pick unet_jax up from by accident
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "unet_jax modules: []" in result.stdout

    run = load_run(tiny.workdir)
    apply_fn = make_apply_fn(run.model)
    outputs = np.load(tmp_path / "outputs.npz")
    for name, images in inputs.items():
        expected = np.asarray(apply_fn(run.variables, images))
        assert outputs[name].shape == images.shape[:3] + (13,)
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-5)
    assert bool(outputs["rejected"])  # 5 rows: not a multiple of 4


def test_symbolic_shapes_and_sidecar(tiny, tmp_path):
    run = load_run(tiny.workdir)
    exported = export.export_model(run.model, run.variables, platforms=("cpu",))
    assert str(exported.in_avals[0].shape) == "(b, 4*h, 4*w, 3)"
    assert str(exported.out_avals[0].shape) == "(b, 4*h, 4*w, 13)"
    assert exported.in_avals[0].dtype == np.uint8
    side = export.sidecar(run, exported)
    json.dumps(side, allow_nan=False)  # strict JSON
    assert side["class_names"] == list(CLASS_NAMES)
    assert side["palette"] == PALETTE.tolist()
    assert side["input"]["shape"] == ["b", "4*h", "4*w", 3]
    assert side["input"]["dtype"] == "uint8" and side["input"]["range"] == [0, 255]
    assert side["normalisation"]["mean"] == list(run.model.mean)
    assert side["output"]["activation"] == "softmax"
    assert side["checkpoint"]["step"] == run.step
    assert side["config"]["model"]["features"] == [4, 8]
    assert side["platforms"] == ["cpu"]
    # The default lowers for CPU and CUDA at once (no GPU needed to export).
    assert export.export_model(run.model, run.variables).platforms == ("cpu", "cuda")


def test_export_cli_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "unet_jax.export", "--workdir", str(tmp_path / "none")]
        + ["--out", str(tmp_path / "m.jaxexport")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert f"workdir {tmp_path / 'none'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.jaxexport").exists()
