"""Your own data end to end: a 6-class colour-mask folder and a binary (0/255) folder go
through train, eval, predict and export with the tiny model.

Oracles: the class declaration the test writes (names and colours must appear, and only
they, in metrics.jsonl, metrics.json, the pictures' legends, predict's outputs and the
export sidecar), the masks' own pixel values (predicted label PNGs must be in the data
set's format) and the model applied by hand (native-size evaluation).
"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import datasets
from tests.conftest import REPO_ROOT
from unet_jax.configs import folder as folder_config
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.run_data import DataConfigError
from unet_jax.deploy import export, predict
from unet_jax.evaluation import evaluate, reports
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import load_run
from unet_jax.run.metric_writers import read_metrics
from unet_jax.train import loop as train_lib

pytestmark = pytest.mark.slow

SIX = {
    "Building": "#3C1098",
    "Land": "#8429F6",
    "Road": "#6EC1E4",
    "Vegetation": "#FEDD3A",
    "Water": "#E2A929",
    "Unlabeled": "#9B9B9B",
}


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def _scene(seed: int, h: int, w: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of classes whose image colour is the class's own: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((h, w), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        ids[y : y + rng.integers(6, 16), x : x + rng.integers(6, 16)] = rng.integers(0, num_classes)
    shades = np.linspace(30, 230, num_classes).astype(np.uint8)
    image = np.stack([shades[ids], 255 - shades[ids], shades[ids] // 2], axis=-1)
    return image, ids


def make_six_class_folder(root: pathlib.Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    colors = np.array([_rgb(c) for c in SIX.values()], np.uint8)
    for i in range(15):
        image, ids = _scene(i, 36 + i % 3, 40 + 2 * (i % 4), len(SIX))
        mask = colors[ids]
        mask[:2, :2] = 0  # black: ignored
        Image.fromarray(image).save(root / "images" / f"tile{i:02d}.jpg", quality=95)
        Image.fromarray(mask).save(root / "masks" / f"tile{i:02d}.png")
    (root / "classes.json").write_text(
        json.dumps(
            {
                "classes": [{"name": n, "color": c} for n, c in SIX.items()],
                "ignore": ["#000000"],
            }
        )
    )


def make_binary_folder(root: pathlib.Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(15):
        image, ids = _scene(i, 32 + i % 2, 36, 2)
        Image.fromarray(image).save(root / "images" / f"b{i:02d}.png")
        Image.fromarray((ids * 255).astype(np.uint8)).save(root / "masks" / f"b{i:02d}.png")


def _config(folder: pathlib.Path, data_dir: pathlib.Path, **overrides):
    config = folder_config.get_config()
    config.folder = str(folder)
    config.data_dir = str(data_dir)
    config.image_size = (32, 32)
    config.model.features = (4, 8)
    config.model.bridge_features = 16
    config.batch_size = 4
    config.eval_batch_size = 4
    config.num_train_steps = 6
    config.warmup_steps = 2
    config.log_every_steps = 2
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
    config.progress_bar = False
    config.learning_rate = 1e-2
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return config


def _legend_spy(monkeypatch) -> list[list[str]]:
    seen: list[list[str]] = []
    original = reports._legend

    def spy(fig, classes, ids):
        seen.append([classes.names[i] for i in ids])
        return original(fig, classes, ids)

    monkeypatch.setattr(reports, "_legend", spy)
    return seen


def _train_eval_predict_export(config, workdir, tmp_path, monkeypatch):
    train_lib.train_and_evaluate(config, workdir, prepare_fn=datasets.prepare_dataset)
    legends = _legend_spy(monkeypatch)
    report = evaluate.run_evaluation(
        workdir,
        evaluate.EvalOptions(split="test", progress=False),
        prepare_fn=datasets.prepare_dataset,
    )
    images = sorted((pathlib.Path(config.folder) / "images").iterdir())[:3]
    predicted = predict.predict_files(workdir, images, tmp_path / "pred", progress=False)
    model_file, sidecar_file = export.export_run(
        workdir, tmp_path / "m.jaxexport", platforms=["cpu"]
    )
    return report, legends, predicted, json.loads(sidecar_file.read_text())


def test_six_class_colour_folder_end_to_end(tmp_path, monkeypatch):
    make_six_class_folder(tmp_path / "aerialish")
    config = _config(tmp_path / "aerialish", tmp_path / "tfds")
    workdir = tmp_path / "run6"
    report, legends, predicted, sidecar = _train_eval_predict_export(
        config, workdir, tmp_path, monkeypatch
    )
    names = list(SIX)
    assert read_run_classes(workdir).names == tuple(names)
    validation = [r for r in read_metrics(workdir) if r["split"] == "validation"]
    assert validation and {f"iou/{n}" for n in names} <= set(validation[-1])
    assert report["class_names"] == names and list(report["per_class"]) == names
    assert report["resolution"] == "native, 32x32 tiles"  # crop-trained: as its validation
    assert legends and all(set(legend) <= set(names) for legend in legends)
    assert predicted["class_names"] == names and predicted["label_format"] == "color"
    allowed = {_rgb(c) for c in SIX.values()}
    for record in predicted["images"]:
        label_image = np.asarray(Image.open(record["label"]))
        assert {tuple(v) for v in label_image.reshape(-1, 3).tolist()} <= allowed
        assert label_image.shape[:2] == (record["height"], record["width"])
    assert sidecar["class_names"] == names
    assert sidecar["palette"] == [list(_rgb(c)) for c in SIX.values()]
    assert sidecar["output"]["shape"][-1] == 6


def test_native_size_evaluation_equals_the_model_applied_by_hand(tmp_path):
    make_six_class_folder(tmp_path / "data")
    config = _config(tmp_path / "data", tmp_path / "tfds")
    workdir = tmp_path / "run"
    train_lib.train_and_evaluate(config, workdir, prepare_fn=datasets.prepare_dataset)
    report = evaluate.run_evaluation(
        workdir,
        evaluate.EvalOptions(split="test", progress=False, pictures=False, full_resolution=True),
        prepare_fn=datasets.prepare_dataset,
    )
    # By hand: pad each test image (reflect) to a multiple of 4, apply, crop, argmax.
    run = load_run(workdir)
    test = datasets.prepare_dataset(config, prepare=False).as_data_source()["test"]
    cm = np.zeros((6, 6), np.int64)
    for i in range(len(test)):
        image, label = test[i]["image"], test[i]["label"][..., 0]
        h, w = label.shape
        m = run.model.size_multiple
        ph, pw = -h % m, -w % m
        padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        logits = run.model.apply(run.variables, padded[None], train=False)[0, :h, :w]
        pred = np.asarray(jax.numpy.argmax(logits, -1))
        valid = label != IGNORE_LABEL
        cm += np.bincount(label[valid].astype(np.int64) * 6 + pred[valid], minlength=36).reshape(
            6, 6
        )
    np.testing.assert_array_equal(np.asarray(report["full_resolution"]["confusion_matrix"]), cm)
    # The training-resolution score is the validation's geometry: eval.py on the validation
    # split with best/ reports the mIoU that chose best/ (metrics.jsonl).
    scored = evaluate.run_evaluation(
        workdir,
        evaluate.EvalOptions(split="validation", progress=False, pictures=False),
        prepare_fn=datasets.prepare_dataset,
        out_dir=tmp_path / "validation",
    )
    best_step = scored["checkpoint"]["step"]
    (logged,) = [
        r for r in read_metrics(workdir) if r["split"] == "validation" and r["step"] == best_step
    ]
    assert scored["mean_iou"] == pytest.approx(logged["mean_iou"], abs=1e-4)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_binary_folder_end_to_end(tmp_path, monkeypatch, activation):
    make_binary_folder(tmp_path / "bin")
    config = _config(tmp_path / "bin", tmp_path / "tfds", **{"model.output_activation": activation})
    workdir = tmp_path / "run2"
    report, legends, predicted, sidecar = _train_eval_predict_export(
        config, workdir, tmp_path, monkeypatch
    )
    assert report["class_names"] == ["background", "foreground"]
    for key in ("iou", "dice", "precision", "recall"):
        assert report[f"foreground_{key}"] == report["per_class"]["foreground"][key]
    markdown = (workdir / "eval" / "test" / "metrics.md").read_text()
    assert "foreground IoU" in markdown
    validation = [r for r in read_metrics(workdir) if r["split"] == "validation"]
    assert "foreground_iou" in validation[-1]
    for record in predicted["images"]:
        mask = np.asarray(Image.open(record["label"]))
        assert mask.ndim == 2 and set(np.unique(mask).tolist()) <= {0, 255}
    channels = 1 if activation == "sigmoid" else 2
    run = load_run(workdir)
    assert run.model.num_classes == channels and sidecar["output"]["shape"][-1] == channels
    assert sidecar["class_names"] == ["background", "foreground"]


def test_num_classes_override_is_checked_against_the_data(tmp_path):
    make_binary_folder(tmp_path / "bin")
    config = _config(tmp_path / "bin", tmp_path / "tfds", num_classes=20)
    with pytest.raises(DataConfigError, match=r"config.num_classes=20.*2 classes"):
        train_lib.train_and_evaluate(config, tmp_path / "run", prepare_fn=datasets.prepare_dataset)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_command_line_reports_bad_folder_without_traceback(tmp_path):
    make_six_class_folder(tmp_path / "data")
    mask = np.array(Image.open(tmp_path / "data" / "masks" / "tile03.png"))
    mask[5:7, 5:9] = (1, 2, 3)
    Image.fromarray(mask).save(tmp_path / "data" / "masks" / "tile03.png")
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config=unet_jax/configs/folder.py",
            f"--config.folder={tmp_path / 'data'}",
            f"--config.data_dir={tmp_path / 'tfds'}",
            f"--workdir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "tile03.png: colour(s) not declared in classes.json: #010203 (8 px)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_class_weights_come_from_the_prepared_pixel_counts(tmp_path, monkeypatch):
    make_six_class_folder(tmp_path / "data")
    config = _config(
        tmp_path / "data", tmp_path / "tfds", class_weights="inverse_frequency", num_train_steps=1
    )
    seen = {}
    real = train_lib.losses.get_loss_fn

    def spy(name, **kwargs):
        seen.update(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(train_lib.losses, "get_loss_fn", spy)
    train_lib.train_and_evaluate(config, tmp_path / "run", prepare_fn=datasets.prepare_dataset)
    # Oracle: count the training split's labels by hand, weights proportional to 1/frequency.
    train = datasets.prepare_dataset(config, prepare=False).as_data_source()["train"]
    counts = np.zeros(6, np.int64)
    for i in range(len(train)):
        counts += np.bincount(train[i]["label"].ravel(), minlength=256)[:6]
    inverse = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
    want = inverse / inverse[counts > 0].mean()
    np.testing.assert_allclose(seen["class_weights"], want, rtol=1e-5)
