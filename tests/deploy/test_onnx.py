"""ONNX export and ONNX Runtime inference: parity with the JAX model, CLI, errors.

Oracle: the live Flax model (``make_apply_fn``) on the same inputs. BatchNorm statistics
and affine parameters are drawn far from their 0/1 initial values, so a graph with broken
BatchNorm folding fails (``test_parity_check_catches_unfolded_batchnorm`` shows it does).

Tolerance: ``|onnx - jax| <= LOGIT_ATOL * max(1, max |jax logits|)`` with LOGIT_ATOL 1e-4
(measured: about 1e-6 relative), and equal argmax wherever the top two JAX logits differ
by more than that tolerance (near-ties are decided by rounding in either implementation).
"""

import json
import pathlib
import shutil
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.conftest import REAL_SAMPLES, REPO_ROOT  # noqa: E402
from tests.evaluation.test_eval import tiny_run  # noqa: E402
from unet_jax.configs import tiny as tiny_config  # noqa: E402
from unet_jax.deploy import export, onnx_export, onnx_graph, onnx_inference, predict  # noqa: E402
from unet_jax.deploy.options import OptionError  # noqa: E402
from unet_jax.deploy.segmenter import Segmenter  # noqa: E402
from unet_jax.evaluation import evaluate
from unet_jax.model.factory import create_model  # noqa: E402
from unet_jax.run.loading import load_run, make_apply_fn  # noqa: E402

LOGIT_ATOL = 1e-4


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    """The tiny run exported by the CLI: (model path, sidecar path)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export.main(["--workdir", str(tiny.workdir), "--format", "onnx", "--out", str(out)]) == 0
    return out, out.with_name("tiny.onnx.json")


def perturbed_variables(model, shape, *, seed: int):
    """Initial variables with every BatchNorm statistic and affine parameter and every
    bias drawn away from its initial value (0 or 1), so that folding is exercised."""
    variables = model.init(jax.random.key(seed), np.zeros(shape, np.uint8), train=False)
    rng = np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
    for path, value in flat.items():
        if path[-1] == "mean":
            flat[path] = rng.normal(0.0, 0.5, value.shape).astype(np.float32)
        elif path[-1] == "var":
            flat[path] = rng.uniform(0.2, 4.0, value.shape).astype(np.float32)
        elif path[-1] == "scale":
            flat[path] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif path[-1] == "bias":
            flat[path] = rng.normal(0.0, 0.3, value.shape).astype(np.float32)
    return flax.traverse_util.unflatten_dict(flat)


def session(proto):
    import onnxruntime as ort

    return ort.InferenceSession(
        proto.SerializeToString(),
        onnx_inference.session_options(threads=2),
        providers=["CPUExecutionProvider"],
    )


def assert_logits_match(actual, expected, *, min_decided=0.99):
    """The module docstring's tolerance; returns the max error relative to the scale.

    ``min_decided``: the share of pixels that must not be near-ties (random weights give
    clear winners; the 6-step tiny run's logits are still nearly flat).
    """
    assert actual.shape == expected.shape and actual.dtype == np.float32
    scale = max(1.0, float(np.abs(expected).max()))
    error = float(np.abs(actual - expected).max())
    assert error <= LOGIT_ATOL * scale, (error, scale)
    if expected.shape[-1] > 1:
        top2 = np.sort(expected, axis=-1)[..., -2:]
        decided = top2[..., 1] - top2[..., 0] > LOGIT_ATOL * scale
        assert decided.mean() >= min_decided
        np.testing.assert_array_equal(actual.argmax(-1)[decided], expected.argmax(-1)[decided])
    else:  # a 1-channel binary head: the label is the sign of the logit
        decided = np.abs(expected[..., 0]) > LOGIT_ATOL * scale
        np.testing.assert_array_equal(
            (actual[..., 0] > 0)[decided], (expected[..., 0] > 0)[decided]
        )
    return error / scale


def model_config(**fields):
    """The tiny config with ``model.*`` and top-level overrides (``num_classes``)."""
    config = tiny_config.get_config()
    for key, value in fields.items():
        target = config if key == "num_classes" else config.model
        setattr(target, key, value)
    return config


VARIANTS = {
    "2-level bn softmax einsum 13 classes": (
        dict(num_classes=13, features=(4, 8), bridge_features=16),
        [(2, 32, 48), (1, 16, 16)],
    ),
    "3-level no-bn sigmoid transpose 2 classes (1-channel head)": (
        dict(
            num_classes=2,
            features=(4, 8, 16),
            bridge_features=8,
            use_batchnorm=False,
            output_activation="sigmoid",
            upsample="transpose",
        ),
        [(3, 40, 24), (1, 8, 64)],
    ),
    "1-level bn softmax transpose 2 classes": (
        dict(num_classes=2, features=(6,), bridge_features=10, upsample="transpose"),
        [(3, 18, 30)],
    ),
    "2-level bn sigmoid einsum 6 classes dropout": (
        dict(
            num_classes=6,
            features=(8, 4),
            bridge_features=12,
            output_activation="sigmoid",
            dropout_rate=0.3,
        ),
        [(2, 64, 32), (4, 12, 8)],
    ),
    "2-level no-bn softmax einsum 1 class": (
        dict(num_classes=1, features=(4, 8), bridge_features=8, use_batchnorm=False),
        [(2, 16, 32)],
    ),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_onnx_logits_equal_apply_fn(name):
    fields, shapes = VARIANTS[name]
    model = create_model(model_config(**fields))
    variables = perturbed_variables(model, (1, 16, 16, 3), seed=len(name))
    proto = onnx_export.build_model(model, variables)
    assert proto.opset_import[0].version == onnx_export.OPSET
    ops = {node.op_type for node in proto.graph.node}
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    ort_session = session(proto)
    apply_fn = make_apply_fn(model)
    rng = np.random.default_rng(0)
    for b, h, w in shapes:  # one session: symbolic batch, height and width
        images = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
        expected = np.asarray(apply_fn(variables, images))
        actual = ort_session.run(None, {"images": images})[0]
        assert_logits_match(actual, expected)


def test_bfloat16_model_exports_float32_weights():
    """A bf16-compute model is exported in float32: its float32 clone is the oracle; the
    bf16 model itself agrees up to bf16 rounding."""
    model = create_model(model_config(dtype="bfloat16"))
    assert model.dtype == jnp.bfloat16
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=3)
    proto = onnx_export.build_model(model, variables)
    assert all(t.data_type == 1 for t in proto.graph.initializer)  # FLOAT
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actual = session(proto).run(None, {"images": images})[0]
    float32 = np.asarray(model.clone(dtype=jnp.float32).apply(variables, images, train=False))
    assert_logits_match(actual, float32)
    bf16 = np.asarray(model.apply(variables, images, train=False))
    assert (actual.argmax(-1) == bf16.argmax(-1)).mean() > 0.9


def test_parity_check_catches_unfolded_batchnorm(monkeypatch):
    """The perturbed statistics make the oracle sensitive to BatchNorm folding."""
    model = create_model(model_config())
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=5)

    def no_folding(kernel, *, scale, bias, mean, var, epsilon=1e-5):
        return kernel, bias

    monkeypatch.setattr(onnx_graph, "fold_batchnorm", no_folding)
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actual = session(onnx_export.build_model(model, variables)).run(None, {"images": images})[0]
    with pytest.raises(AssertionError):
        assert_logits_match(actual, np.asarray(model.apply(variables, images, train=False)))


def test_export_refuses_variables_it_does_not_know():
    model = create_model(model_config())
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=0)
    variables["params"]["Extra_0"] = {"kernel": np.ones((1, 1, 1, 1), np.float32)}
    with pytest.raises(onnx_export.OnnxExportError, match="Extra_0"):
        onnx_export.build_model(model, variables)


@pytest.mark.skipif(
    not (REAL_SAMPLES / "CameraRGB" / "0.png").exists(), reason="real samples absent"
)
def test_real_frames_same_labels_as_jax():
    """The six real 800x600 CARLA frames (halved to 400x300, padded to 400x304 by the
    Segmenter): the ONNX and JAX segmenters give the same label for every pixel."""
    frames = np.stack(
        [
            np.asarray(Image.open(path).convert("RGB").resize((400, 300), Image.BILINEAR))
            for path in sorted((REAL_SAMPLES / "CameraRGB").glob("*.png"))
        ]
    )
    assert frames.shape == (6, 300, 400, 3)
    config = model_config(features=(8, 16, 16), bridge_features=16)
    model = create_model(config)
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=7)
    proto = onnx_export.build_model(model, variables)
    padded = np.pad(frames, ((0, 0), (0, 4), (0, 0), (0, 0)), mode="reflect")
    logits = session(proto).run(None, {"images": padded})[0]
    assert_logits_match(logits, np.asarray(make_apply_fn(model)(variables, padded)))
    jax_labels, _ = Segmenter(
        make_apply_fn(model), variables, size_multiple=8, batch_size=3
    ).predict(frames)
    onnx_model = onnx_inference.OnnxModel(
        path=pathlib.Path("in-memory.onnx"),
        session=session(proto),
        sidecar=_sidecar_for(model, config),
    )
    onnx_labels, _ = onnx_model.segmenter(batch_size=3).predict(frames)
    assert len(np.unique(jax_labels)) > 3  # not a constant prediction
    np.testing.assert_array_equal(onnx_labels, jax_labels)


def _sidecar_for(model, config):
    return {
        "num_classes": config.num_classes,
        "class_names": [f"c{i}" for i in range(config.num_classes)],
        "palette": [[i, i, i] for i in range(config.num_classes)],
        "input": {"size_multiple": model.size_multiple, "training_size": [32, 32]},
        "output": {"activation": config.model.output_activation},
    }


# ----------------------------------------------------------------------------
# The command lines on a tiny trained run.
# ----------------------------------------------------------------------------


def test_export_cli_writes_model_and_the_shared_sidecar(tiny, tiny_onnx):
    path, side_path = tiny_onnx
    run = load_run(tiny.workdir)
    side = json.loads(side_path.read_text())
    reference = json.loads(json.dumps(export.run_sidecar(run, platforms=["onnx"])))
    for key in ("class_names", "palette", "input", "normalisation", "output", "checkpoint"):
        assert side[key] == reference[key]
    assert side["onnx"]["opset"] == 17 and side["onnx"]["input_name"] == "images"
    model = onnx_inference.load_onnx_model(path)
    assert model.training_size == (32, 32) and model.size_multiple == 4
    assert model.config["eval_batch_size"] == 4 and model.activation == "softmax"
    images = np.random.default_rng(3).integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
    expected = np.asarray(make_apply_fn(run.model)(run.variables, images))
    assert_logits_match(model.logits(images), expected, min_decided=0.5)
    with pytest.raises(OptionError, match="multiples of 4"):
        model.logits(images[:, :30])


def test_session_options_threads_and_no_spinning():
    options = onnx_inference.session_options(threads=3)
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(OptionError, match="threads"):
        onnx_inference.session_options(threads=0)


def test_predict_cli_onnx_backend_matches_jax_backend(tiny, tiny_onnx, tmp_path):
    rng = np.random.default_rng(4)
    for i, (h, w) in enumerate([(30, 45), (32, 32), (70, 50)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    common = [str(tmp_path / "*.png"), "--progress=false", "--scale=native", "--probabilities"]
    assert (
        predict.main(common + ["--workdir", str(tiny.workdir), "--out", str(tmp_path / "j")]) == 0
    )
    onnx_args = ["--onnx", str(tiny_onnx[0]), "--onnx_threads", "1"]
    assert predict.main(common + onnx_args + ["--out", str(tmp_path / "o")]) == 0
    for i in range(3):
        probs_j = np.load(tmp_path / "j" / "probabilities" / f"{i}.npy").astype(np.float32)
        probs_o = np.load(tmp_path / "o" / "probabilities" / f"{i}.npy").astype(np.float32)
        np.testing.assert_allclose(probs_o, probs_j, atol=1e-3)
        # The 6-step run's probabilities are nearly flat: labels must agree wherever the
        # top two differ by more than float16 rounding of the saved probabilities.
        top2 = np.sort(probs_j, axis=-1)[..., -2:]
        decided = top2[..., 1] - top2[..., 0] > 2e-3
        assert decided.mean() > 0.5
        for kind in ("labels", "overlays"):
            a = np.asarray(Image.open(tmp_path / "j" / kind / f"{i}.png"))
            b = np.asarray(Image.open(tmp_path / "o" / kind / f"{i}.png"))
            assert a.shape == b.shape
            np.testing.assert_array_equal(a[decided], b[decided])
    result = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert result["onnx"] == str(tiny_onnx[0]) and result["checkpoint"]["step"] == 6
    assert result["class_names"] == json.loads(tiny_onnx[1].read_text())["class_names"]


def test_eval_onnx_gives_the_checkpoint_numbers(tiny, tiny_onnx, tmp_path):
    options = dict(split="validation", checkpoint="best", pictures=False, progress=False)
    jax_report = evaluate.run_evaluation(
        tiny.workdir, evaluate.EvalOptions(**options), sources=tiny.sources, out_dir=tmp_path / "j"
    )
    onnx_report = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(onnx=str(tiny_onnx[0]), **options),
        sources=tiny.sources,
        out_dir=tmp_path / "o",
    )
    assert onnx_report["confusion_matrix"] == jax_report["confusion_matrix"]
    assert onnx_report["mean_iou"] == jax_report["mean_iou"]
    assert onnx_report["checkpoint"] == jax_report["checkpoint"]
    assert onnx_report["options"]["onnx"] == str(tiny_onnx[0])


def test_eval_cli_onnx_end_to_end(tiny, tiny_onnx, tmp_path):
    """eval.py --onnx on the TFDS data set prepared from the builder's dummy frames."""
    from datasets.lyft_udacity import make_dummy_data

    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config.update(
        dataset="lyft_udacity/resized_256",
        data_dir=str(tmp_path / "tfds"),
        manual_dir=str(make_dummy_data.DUMMY_DIR),
    )
    (workdir / "config.json").write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval.py"), f"--workdir={workdir}"]
        + [f"--onnx={tiny_onnx[0]}", "--onnx_threads=1", "--progress=false", "--pictures=false"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"\nEvaluated {tiny_onnx[0]} (exported from {workdir} checkpoint" in result.stdout
    report = json.loads((workdir / "eval" / "test_onnx" / "metrics.json").read_text())
    assert report["options"]["onnx"] == str(tiny_onnx[0])
    assert np.sum(report["confusion_matrix"]) == 6 * 32 * 32


def test_multi_scale_tta_with_onnx_runs_as_the_jax_backend_does(tiny, tiny_onnx, tmp_path):
    """Multi-scale TTA resizes the images: the ONNX session takes uint8 only, so the
    resized images must stay uint8 (they were float32 and the command failed)."""
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate([(30, 45), (32, 32)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    common = [str(tmp_path / "*.png"), "--progress=false", "--probabilities", "--tta_flip"]
    common += ["--tta_scales=1,0.5"]
    jax_out, onnx_out = tmp_path / "j", tmp_path / "o"
    assert predict.main(common + ["--workdir", str(tiny.workdir), "--out", str(jax_out)]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "unet_jax.predict", *common, f"--onnx={tiny_onnx[0]}"]
        + ["--onnx_threads=1", f"--out={onnx_out}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.startswith("Segmented 2 image(s) with ")
    for i in range(2):
        probs_j = np.load(jax_out / "probabilities" / f"{i}.npy").astype(np.float32)
        probs_o = np.load(onnx_out / "probabilities" / f"{i}.npy").astype(np.float32)
        np.testing.assert_allclose(probs_o, probs_j, atol=1e-3)


def test_cli_errors_name_the_file(tiny, tiny_onnx, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    args = [str(image), "--out", str(tmp_path / "o"), "--progress=false"]
    assert predict.main(args + ["--onnx", str(tmp_path / "gone.onnx")]) == 2
    assert f"ONNX model {tmp_path / 'gone.onnx'} does not exist" in capsys.readouterr().err
    assert predict.main(args + ["--onnx", str(image)]) == 2
    assert f"{image} is not a loadable ONNX model" in capsys.readouterr().err
    assert predict.main(args) == 2
    assert "--workdir is required (or --onnx FILE.onnx)" in capsys.readouterr().err
    lone = tmp_path / "lone.onnx"
    shutil.copy(tiny_onnx[0], lone)  # no sidecar beside it
    assert predict.main(args + ["--onnx", str(lone)]) == 2
    assert f"{lone}.json is missing" in capsys.readouterr().err
    out = str(tmp_path / "m.onnx")
    assert export.main(["--workdir", str(tmp_path / "none"), "--format", "onnx", "--out", out]) == 2
    assert f"workdir {tmp_path / 'none'} does not exist" in capsys.readouterr().err
    # The module entry point, in a fresh interpreter: message, exit 2, no traceback.
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval.py"), f"--workdir={tiny.workdir}"]
        + [f"--onnx={image}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{image} is not a loadable ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_onnx_is_optional():
    """Without onnx and onnxruntime, `import unet_jax` and every module still import, and
    the ONNX commands say how to install them."""
    code = (
        "import sys; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
        "import unet_jax, unet_jax.inference, unet_jax.deploy.export, unet_jax.deploy.predict\n"
        "from unet_jax.deploy import onnx_export, onnx_inference\n"
        "for fn in (onnx_export.require_onnx, onnx_inference.require_onnxruntime):\n"
        "    try:\n"
        "        fn()\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("pip install -e '.[onnx]'") == 2
    assert "OnnxExportError" in result.stdout and "OnnxModelError" in result.stdout
