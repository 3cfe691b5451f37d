"""A 16-bit grey folder and a 5-band int16 folder through the README's commands: train.py
(2 steps), eval.py, predict; then the run's labels from the model applied by hand, from
predict's files, from eval.py's scores, from jax.export and from ONNX agree.

Oracles: the model applied by hand (``unet_jax.load``'s model on the images as stored);
the IoU of its labels against the masks, computed here (eval.py's full-resolution
scores); argmax of the exported artefacts' logits.
"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.image_kinds import make_folder
from unet_jax.data.image_files import read_image
from unet_jax.deploy import export
from unet_jax.run.loading import load_run

pytestmark = pytest.mark.slow

TINY = [
    "--config.image_size=(32,32)",
    "--config.model.features=(4,8)",
    "--config.model.bridge_features=16",
    "--config.batch_size=4",
    "--config.eval_batch_size=4",
    "--config.num_train_steps=2",
    "--config.warmup_steps=1",
    "--config.log_every_steps=1",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.progress_bar=False",
]


def _run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _iou(label: np.ndarray, prediction: np.ndarray) -> list[float]:
    return [
        float(((label == c) & (prediction == c)).sum() / ((label == c) | (prediction == c)).sum())
        for c in (0, 1)
    ]


@pytest.mark.parametrize("kind", ["grey16", "int16x5"])
def test_train_eval_predict_export_agree_on_images_as_stored(tmp_path, kind):
    folder = make_folder(tmp_path / kind, kind, one_size=True)  # 36x40: no padding
    workdir = tmp_path / "run"
    data = f"--config.data_dir={tmp_path / 'tfds'}"
    _run(
        "train.py",
        "--config=unet_jax/configs/folder.py",
        f"--config.folder={folder}",
        data,
        *TINY,
        f"--workdir={workdir}",
    )
    _run("eval.py", f"--workdir={workdir}", "--full_resolution")
    _run(
        "-m",
        "unet_jax.predict",
        f"--workdir={workdir}",
        str(folder / "images"),
        f"--out={tmp_path / 'pred'}",
    )

    run = load_run(workdir)
    config = json.loads((workdir / "config.json").read_text())["model"]
    assert config["input_norm"] == "zscore"
    assert config["in_channels"] == (1 if kind == "grey16" else 5)
    paths = sorted((folder / "images").iterdir())
    images = np.stack([read_image(p) for p in paths])
    assert images.dtype == (np.uint16 if kind == "grey16" else np.int16)
    by_hand = np.asarray(run.model.apply(run.variables, images, train=False)).argmax(-1)
    predicted = np.stack(
        [np.asarray(Image.open(tmp_path / "pred" / "labels" / f"{p.stem}.png")) for p in paths]
    )
    np.testing.assert_array_equal(predicted > 0, by_hand > 0)  # 0/255 masks, as the data's

    # eval.py's whole-image scores are the IoU of the model's labels on the test images.
    metrics = json.loads((workdir / "eval" / "test" / "metrics.json").read_text())
    full = metrics["full_resolution"]
    cm = np.asarray(full["confusion_matrix"])
    masks = {p.stem: np.asarray(Image.open(folder / "masks" / f"{p.stem}.png")) > 0 for p in paths}
    labels = {p.stem: by_hand[i] for i, p in enumerate(paths)}
    assert full["num_examples"] * 36 * 40 == cm.sum()
    test_names = _test_names(workdir)
    label = np.concatenate([masks[n].ravel() for n in test_names])
    prediction = np.concatenate([labels[n].ravel() for n in test_names])
    np.testing.assert_allclose(
        [full["per_class"][c]["iou"] for c in ("background", "foreground")],
        _iou(label, prediction),
        rtol=1e-6,
    )

    # jax.export and ONNX take the images as stored and give the same labels.
    model_file, sidecar = export.export_run(workdir, tmp_path / "m.jaxexport", platforms=["cpu"])
    exported = jax.export.deserialize(model_file.read_bytes())
    np.testing.assert_array_equal(np.asarray(exported.call(images)).argmax(-1), by_hand)
    side = json.loads(sidecar.read_text())
    assert side["input"]["dtype"] == images.dtype.name
    assert side["normalisation"]["rule"] == "zscore"
    onnx_export = pytest.importorskip("unet_jax.deploy.onnx_export")
    pytest.importorskip("onnxruntime")
    from unet_jax.deploy.onnx_inference import load_onnx_model

    onnx_file, _ = onnx_export.export_onnx_run(workdir, tmp_path / "m.onnx")
    logits = load_onnx_model(onnx_file).logits(images)
    reference = np.asarray(run.model.apply(run.variables, images, train=False))
    np.testing.assert_allclose(logits, reference, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(-1), by_hand)


def _test_names(workdir: pathlib.Path) -> list[str]:
    """The names of the prepared test split's images (what eval.py scored)."""
    from datasets.folder import folder_dataset_builder as fdb

    config = json.loads((workdir / "config.json").read_text())
    builder = fdb.open_builder(
        config["folder"], data_dir=config["data_dir"], prepare=False, log=lambda *_: None
    )
    names = [e["name"] for e in builder.as_data_source()["test"]]
    return [n.decode() if isinstance(n, bytes) else n for n in names]
