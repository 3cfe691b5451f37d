"""int8 ONNX export (``--int8``): it runs, agrees with float32, is marked, refuses bad input.

Oracle: the float32 ONNX model of the same weights (itself checked against the Flax model in
test_onnx.py); agreement is the share of pixels with the same label, measured on held-out
frames of the data set the model was calibrated on, never on the calibration images.

The 98 % agreement target is for a trained model, whose top two logits are far apart.
The tiny run has trained 6 steps: its logits are near-ties (median top-two gap 0.04 on the
held-out frames), so it gets a looser bound (96.3 % measured with 8 calibration frames)
and, to keep a broken quantisation from hiding behind it, a bound on the logit error (5 % of
the float32 logits' range; measured: at most 0.03 off). The same config trained 150 steps
on these frames: 98.1 % (int8 head: 96.8 %, its clipped logits off by up to 2.1).
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.conftest import REAL_SAMPLES  # noqa: E402
from tests.deploy.test_onnx import (  # noqa: E402
    assert_logits_match,
    model_config,
    perturbed_variables,
    session,
)
from tests.evaluation.test_eval import tiny_run  # noqa: E402
from tests.fake_data import make_examples  # noqa: E402
from unet_jax.data import augment  # noqa: E402
from unet_jax.data import sources as data_sources  # noqa: E402
from unet_jax.deploy import export, onnx_export, onnx_inference, onnx_int8  # noqa: E402
from unet_jax.evaluation import evaluate  # noqa: E402
from unet_jax.run.loading import (
    load_config,  # noqa: E402
    make_apply_fn,  # noqa: E402
)
from unet_jax.run.state import create_model  # noqa: E402

MIN_AGREEMENT_UNTRAINED = 0.95  # the tiny run (6 steps), measured 0.963
MAX_LOGIT_ERROR = 0.05  # of the float32 logits' range


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def run_on_dummy_frames(tiny, tmp_path):
    """A copy of the tiny run whose data set is the Lyft-Udacity builder's dummy frames
    (prepared on first use, in ``tmp_path``), as test_onnx's eval.py test does."""
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
    return workdir


@pytest.fixture(scope="module")
def int8_export(tiny, tmp_path_factory):
    """(workdir, int8 model, float32 model) of the tiny run, both exported by the CLI."""
    tmp = tmp_path_factory.mktemp("int8")
    workdir = run_on_dummy_frames(tiny, tmp)
    common = ["--workdir", str(workdir), "--format", "onnx"]
    int8, float32 = tmp / "int8.onnx", tmp / "float32.onnx"
    assert export.main(common + ["--int8", "--calibration", "5", "--out", str(int8)]) == 0
    assert export.main(common + ["--out", str(float32)]) == 0
    return workdir, int8, float32


def agreement(a, b):
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def test_int8_export_runs_agrees_with_float32_and_is_marked(int8_export):
    workdir, int8_path, float_path = int8_export
    int8 = onnx_inference.load_onnx_model(int8_path)
    float32 = onnx_inference.load_onnx_model(float_path)
    proto = onnx_export.require_onnx().load(str(int8_path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    float_proto = onnx_export.require_onnx().load(str(float_path))
    convolutions = sum(n.op_type in ("Conv", "ConvTranspose") for n in float_proto.graph.node)
    int8_weights = [t for t in proto.graph.initializer if t.data_type == 3 and len(t.dims) == 4]
    assert len(int8_weights) == convolutions - 1  # every convolution weight but the head's
    producers = {out: node for node in proto.graph.node for out in node.output}
    head = producers[producers["logits"].input[0]]  # the Transpose's input
    assert head.op_type == "Conv"  # float32 logits: no QuantizeLinear/DequantizeLinear after it
    assert head.name == onnx_int8.logits_convolution(proto)
    weights = {t.name: t.data_type for t in proto.graph.initializer}
    assert weights[head.input[1]] == 1  # its weight is float32
    side = json.loads(int8_path.with_name("int8.onnx.json").read_text())
    quantization = side["quantization"]
    assert quantization["dtype"] == "int8" and quantization["format"] == "QDQ"
    assert quantization["calibration"]["count"] == 5
    assert quantization["calibration"]["split"] == "train"
    assert quantization["calibration"]["dataset"] == "lyft_udacity/resized_256"
    assert side["onnx"]["weights_dtype"] == "int8"
    float_side = json.loads(float_path.with_name("float32.onnx.json").read_text())
    assert "quantization" not in float_side
    for key in ("class_names", "palette", "input", "normalisation", "output", "checkpoint"):
        assert side[key] == float_side[key]
    images = held_out_frames(workdir)
    a, b = int8.logits(images), float32.logits(images)
    assert a.shape == b.shape and a.dtype == np.float32
    assert np.abs(a - b).max() <= MAX_LOGIT_ERROR * (b.max() - b.min())
    assert agreement(a, b) >= MIN_AGREEMENT_UNTRAINED


def held_out_frames(workdir):
    """The test split of the run's data set at the training size (the pipeline's resize)."""
    import datasets

    config = load_config(workdir)
    dataset = data_sources.open_dataset(
        config, splits=("test",), prepare_fn=datasets.prepare_dataset
    )
    resize = augment.Resize(*config.image_size)
    test = dataset.sources["test"]
    return np.stack([resize.map(test[i])["image"] for i in range(len(test))])


def test_eval_takes_the_int8_model(tiny, int8_export, tmp_path):
    _, int8_path, float_path = int8_export
    reports = {}
    for name, path in (("int8", int8_path), ("float32", float_path)):
        reports[name] = evaluate.run_evaluation(
            tiny.workdir,
            evaluate.EvalOptions(split="test", onnx=str(path), pictures=False, progress=False),
            sources=tiny.sources,
            out_dir=tmp_path / name,
        )
    assert np.sum(reports["int8"]["confusion_matrix"]) == 5 * 32 * 32
    assert abs(reports["int8"]["mean_iou"] - reports["float32"]["mean_iou"]) <= 0.02


@pytest.mark.parametrize("upsample", ["einsum", "transpose"])
def test_depth_to_space_up_convolution_equals_apply_fn(upsample):
    """The int8 export's graph writes the up-convolution as 1x1 Conv + DepthToSpace: in
    float32 it computes the model's function (test_onnx.py's tolerance)."""
    model = create_model(model_config(features=(4, 8), bridge_features=6, upsample=upsample))
    variables = perturbed_variables(model, (1, 16, 16, 3), seed=4)
    proto = onnx_export.build_model(model, variables, upconv="depth_to_space")
    ops = [node.op_type for node in proto.graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 2
    images = np.random.default_rng(5).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    expected = np.asarray(make_apply_fn(model)(variables, images))
    assert_logits_match(session(proto).run(None, {"images": images})[0], expected)
    with pytest.raises(onnx_export.OnnxExportError, match="upconv"):
        onnx_export.build_model(model, variables, upconv="pixel_shuffle")


def test_calibration_images_are_unaugmented_training_inputs(tiny):
    """The images are training examples resized to the training size by the pipeline's own
    Resize (no augmentation), each example at most once, in the seeded training order."""
    train = make_examples(7, size=(40, 48), seed=5)
    images = list(onnx_int8.calibration_images(train, tiny.config, count=10))
    assert len(images) == 7 and all(x.shape == (1, 32, 32, 3) for x in images)
    resize = augment.Resize(32, 32)
    expected = [resize.map(e)["image"] for e in train]
    matches = [[np.array_equal(x[0], e) for e in expected].index(True) for x in images]
    assert sorted(matches) == list(range(7)) and matches != list(range(7))


EPISODE = REAL_SAMPLES.parent / "carla_episode"  # real CARLA training frames


def halved_frames(folder, count=None):
    """The 800x600 frames of ``folder/CameraRGB`` halved and padded to 400x304."""
    paths = sorted((folder / "CameraRGB").glob("*.png"))[:count]
    frames = np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize((400, 300), Image.BILINEAR)) for p in paths]
    )
    return np.pad(frames, ((0, 0), (0, 4), (0, 0), (0, 0)), mode="reflect")


@pytest.mark.skipif(
    not ((REAL_SAMPLES / "CameraRGB" / "0.png").exists() and (EPISODE / "CameraRGB").is_dir()),
    reason="real samples or the CARLA episode absent",
)
def test_real_frames_agree_with_float32(tmp_path):
    """The six real CARLA test frames: int8 and float32 labels agree; calibration on eight
    frames of another real recording (the episode). The model has random (perturbed)
    weights, whose logits are far less decided than a trained model's: measured 97.4 %,
    so this asserts >= 95 % (the 98 % target needs a model trained on CARLA frames)."""
    frames = halved_frames(REAL_SAMPLES)
    model = create_model(model_config(features=(8, 16, 16), bridge_features=16))
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=7)
    proto = onnx_export.build_model(model, variables)
    calibration = [frame[None] for frame in halved_frames(EPISODE, 8)]
    out = tmp_path / "int8.onnx"
    assert onnx_int8.quantize_model(proto, out, calibration) == 8
    import onnxruntime as ort

    int8 = ort.InferenceSession(
        str(out), onnx_inference.session_options(), providers=["CPUExecutionProvider"]
    )
    a = int8.run(None, {"images": frames})[0]
    b = session(proto).run(None, {"images": frames})[0]
    assert len(np.unique(b.argmax(-1))) > 3  # not a constant prediction
    assert agreement(a, b) >= 0.95


def test_int8_errors(tiny, tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    base = ["--workdir", str(tiny.workdir), "--out", out, "--int8"]
    assert export.main(base) == 2  # the default format is jaxexport
    assert "--int8 needs --format onnx (got --format jaxexport)" in capsys.readouterr().err
    assert export.main(base + ["--format", "onnx", "--calibration", "0"]) == 2
    assert "--calibration must be >= 1 training images, got 0" in capsys.readouterr().err


def test_int8_error_for_a_run_without_training_data(tiny, tmp_path):
    """A run whose data set is not prepared and cannot be (no manual download): one line
    naming the data set and what to do, exit 2, no traceback, nothing written."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config.update(
        dataset="lyft_udacity/resized_256",
        data_dir=str(tmp_path / "tfds"),
        manual_dir=str(tmp_path / "no_downloads"),
    )
    (workdir / "config.json").write_text(json.dumps(config))
    out = tmp_path / "m.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "unet_jax.export", "--workdir", str(workdir), "--format", "onnx"]
        + ["--int8", "--calibration", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: the builders are found from the package
        check=False,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "lyft_udacity/resized_256" in lines[0] and "prepare it" in lines[0]
    assert f"data_dir {tmp_path / 'tfds'}" in lines[0]
    assert not out.exists()
