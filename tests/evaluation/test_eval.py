"""Evaluation (unet_jax.evaluation.evaluate, eval.py), loading (unet_jax.inference) and reports.

Oracles: the training loop's own validation (the evaluator with the pmap driver's eval step) for
the training-resolution numbers; hand-written numpy padding + ``model.apply`` for full
resolution and TTA; a point-wise fake model for tiling; formulas for the metrics.
"""

import dataclasses
import html
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from datasets.lyft_udacity.classes import CARLA_CLASSES, CLASS_NAMES
from tests.conftest import REPO_ROOT
from tests.fake_data import make_examples
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.image_ops import blend_window, tile_origins
from unet_jax.deploy.options import OptionError, SegmenterOptions
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.evaluation import evaluate, metrics, reports
from unet_jax.evaluation.evaluator import Evaluator, Geometry, device_predictor
from unet_jax.run.checkpoint_choice import CheckpointSpecError
from unet_jax.run.checkpointing import CheckpointError, IncompatibleCheckpointError
from unet_jax.run.loading import WorkdirError, load_run
from unet_jax.run.metric_writers import read_metrics

# ----------------------------------------------------------------------------
# A tiny trained run, shared by this module and test_predict/test_export/test_reuse_example.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class TinyRun:
    workdir: pathlib.Path
    sources: dict
    config: object


_TINY: dict[str, TinyRun] = {}


def tiny_run(tmp_path_factory) -> TinyRun:
    """Trains the tiny config on fake data once per test session (about 10 s)."""
    if "run" not in _TINY:
        from unet_jax.configs import tiny
        from unet_jax.train import loop as train_lib

        config = tiny.get_config()
        workdir = tmp_path_factory.mktemp("tiny_run")
        sources = {
            "train": make_examples(16, seed=1),
            "validation": make_examples(6, seed=2),
            "test": make_examples(5, seed=3),
        }
        train_lib.train_and_evaluate(config, workdir, sources=sources, classes=CARLA_CLASSES)
        _TINY["run"] = TinyRun(workdir=workdir, sources=sources, config=config)
    return _TINY["run"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRun:
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(tiny):
    return load_run(tiny.workdir, checkpoint="latest")


def _options(**kw) -> evaluate.EvalOptions:
    return evaluate.EvalOptions(progress=False, **kw)


def _reference_predictions(run, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Reflect-pad to the size multiple, apply the model, crop, argmax (numpy + flax)."""
    m = run.model.size_multiple
    _, h, w, _ = images.shape
    ph, pw = (-h) % m, (-w) % m
    padded = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
    logits = np.asarray(run.model.apply(run.variables, padded, train=False))
    if not tta:
        return logits[:, :h, :w].argmax(-1)
    mirrored = np.asarray(run.model.apply(run.variables, padded[:, :, ::-1], train=False))
    probs = jax.nn.softmax(logits, -1) + jax.nn.softmax(mirrored, -1)[:, :, ::-1]
    return np.asarray(probs)[:, :h, :w].argmax(-1)


# ----------------------------------------------------------------------------
# Evaluation against the training loop's validation.
# ----------------------------------------------------------------------------


def test_training_resolution_matches_the_training_loop_validation(tiny, loaded, tmp_path):
    from unet_jax.model.factory import create_model
    from unet_jax.train import loop as train_lib
    from unet_jax.train import parallel
    from unet_jax.train.init_state import create_train_state

    report = evaluate.run_evaluation(
        tiny.workdir,
        _options(split="validation", checkpoint="latest", num_gallery=2),
        sources=tiny.sources,
        out_dir=tmp_path,
    )
    config = tiny.config
    # Oracle: the trainer's validation (the driver's eval step) on the same restored state.
    from unet_jax.run.checkpointing import Checkpointer

    template = create_train_state(config, rng=jax.random.key(0), total_steps=1)
    checkpointer = Checkpointer(tiny.workdir, keep=3)
    state, _ = checkpointer.restore(template)
    checkpointer.close()
    driver = parallel.make_driver(
        config.driver,
        model_apply=create_model(config, bn_axis_name=parallel.AXIS).apply,
        loss_fn=train_lib.make_loss_fn(config),
        num_classes=config.num_classes,
    )
    evaluator = Evaluator(
        tiny.sources["validation"],
        geometry=Geometry.of_run(config),
        class_names=CLASS_NAMES,
        batch_size=config.eval_batch_size,
        layout=driver.layout,
        num_local_devices=jax.local_device_count(),
    )
    expected = evaluator.run(device_predictor(driver, driver.put_state(state)))
    np.testing.assert_array_equal(report["confusion_matrix"], expected["confusion"])
    assert report["checkpoint"] == {"requested": "latest", "step": int(state.step)}
    assert report["num_examples"] == len(tiny.sources["validation"])
    # ... and what the training run logged at that step.
    logged = [r for r in read_metrics(tiny.workdir) if r["split"] == "validation"][-1]
    assert logged["step"] == report["checkpoint"]["step"]
    assert report["mean_iou"] == pytest.approx(logged["mean_iou"], abs=1e-9)

    # The per-class scores follow from the confusion matrix by their formulas.
    cm = np.asarray(report["confusion_matrix"], np.float64)
    tp = np.diag(cm)
    for i, name in enumerate(CLASS_NAMES):
        scores = report["per_class"][name]
        union = cm[i].sum() + cm[:, i].sum() - tp[i]
        if union:
            assert scores["iou"] == pytest.approx(tp[i] / union)
            assert scores["dice"] == pytest.approx(2 * tp[i] / (union + tp[i]))
        else:
            assert scores["iou"] is None and scores["dice"] is None
        assert scores["pixels"] == cm[i].sum()
    assert report["pixel_accuracy"] == pytest.approx(tp.sum() / cm.sum())
    # Lyft-Udacity classes: the challenge's Vehicles F2 by its formula, beside mIoU.
    car = CLASS_NAMES.index("Vehicles")
    tp_car, fp_car, fn_car = tp[car], cm[:, car].sum() - tp[car], cm[car].sum() - tp[car]
    if tp_car + fp_car + fn_car:
        f2 = 5 * tp_car / (5 * tp_car + 4 * fn_car + fp_car)
        assert report["challenge_vehicles_f2"] == pytest.approx(f2)
    road = [CLASS_NAMES.index("Roads"), CLASS_NAMES.index("RoadLines")]
    assert report["challenge_road_f05"] is None or 0 <= report["challenge_road_f05"] <= 1
    assert cm[np.ix_(road, road)].sum() == 0 or report["challenge_road_f05"] > 0

    # Files: metrics.json (valid strict JSON) and metrics.md, and the pictures.
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["confusion_matrix"] == report["confusion_matrix"]
    assert on_disk["options"]["split"] == "validation"
    markdown = (tmp_path / "metrics.md").read_text()
    assert "| Buildings |" in markdown and "mean IoU" in markdown
    for name in ("confusion_matrix", "gallery", "class_panels", "training_curves"):
        with Image.open(tmp_path / f"{name}.png") as picture:
            assert picture.width > 300 and picture.height > 200
        assert f"({name}.png)" in markdown


def test_full_resolution_pads_and_crops_and_tta_averages(tiny, loaded, tmp_path):
    # 34x45 is not a multiple of the tiny model's 4: reflect-padded to 36x48, cropped back.
    full = {"test": make_examples(3, size=(34, 45), seed=7)}
    for tta in (False, True):
        report = evaluate.run_evaluation(
            tiny.workdir,
            _options(
                split="test",
                checkpoint="latest",
                full_resolution=True,
                scale="native",
                segment=SegmenterOptions(tta_flip=tta),
                pictures=not tta,  # drawn once is enough
            ),
            sources=tiny.sources,
            full_sources=full,
            out_dir=tmp_path / str(tta),
        )
        result = report["full_resolution"]
        assert (
            result["sizes"] == {"34x45": 3}
            and result["scales"] == {"native": 3}
            and result["tiled"] == 0
        )
        images = np.stack([x["image"] for x in full["test"]])
        labels = np.stack([x["label"][..., 0] for x in full["test"]])
        expected = metrics.confusion_counts(
            _reference_predictions(loaded, images, tta=tta), labels, num_classes=13
        )
        np.testing.assert_array_equal(result["confusion_matrix"], expected)
        assert (tmp_path / str(tta) / "gallery_full.png").is_file() == (not tta)


def test_full_resolution_with_resized_input(tiny, loaded, tmp_path):
    full = {"test": make_examples(2, size=(48, 40), seed=8)}
    report = evaluate.run_evaluation(
        tiny.workdir,
        _options(
            split="test",
            checkpoint="latest",
            full_resolution=True,
            scale="resize",
            pictures=False,
        ),
        sources=tiny.sources,
        full_sources=full,
        out_dir=tmp_path,
    )
    result = report["full_resolution"]
    assert result["scales"] == {"resize": 2} and result["sizes"] == {"48x40": 2}
    # Oracle: PIL bilinear to 32x32, the model, argmax, PIL NEAREST back to 48x40.
    expected = np.zeros((13, 13), np.int64)
    for example in full["test"]:
        small = Image.fromarray(example["image"]).resize((32, 32), Image.Resampling.BILINEAR)
        logits = loaded.model.apply(loaded.variables, np.asarray(small)[None], train=False)
        ids = np.asarray(logits)[0].argmax(-1).astype(np.uint8)
        back = np.asarray(Image.fromarray(ids).resize((40, 48), Image.Resampling.NEAREST))
        expected += metrics.confusion_counts(
            back[None], example["label"][None, ..., 0], num_classes=13
        )
    np.testing.assert_array_equal(result["confusion_matrix"], expected)
    with pytest.raises(OptionError, match="'tiny'"):
        evaluate.run_evaluation(
            tiny.workdir,
            _options(split="test", scale="tiny"),
            sources=tiny.sources,
            out_dir=tmp_path,
        )


def test_confusion_counts_agrees_with_the_device_confusion_matrix():
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, 13, (3, 9, 7))
    labels = rng.integers(0, 15, (3, 9, 7)).astype(np.uint8)  # 13, 14: out of range
    labels[0, :2] = IGNORE_LABEL
    mask = np.array([True, False, True])
    ours = metrics.confusion_counts(predictions, labels, num_classes=13, mask=mask)
    theirs = metrics.confusion_matrix(predictions, labels, num_classes=13, mask=mask)
    np.testing.assert_array_equal(ours, np.asarray(theirs))
    assert ours.sum() == ((labels < 13) & mask[:, None, None]).sum()


# ----------------------------------------------------------------------------
# Padding and tiling.
# ----------------------------------------------------------------------------


def _pointwise_apply(variables, images):
    """A fake 'model' whose logits at a pixel depend on that pixel only."""
    x = images.astype(np.float32) / 255.0
    return x @ variables["w"] + variables["b"]


def test_tiles_cover_every_pixel_and_blend_exactly_for_a_pointwise_model():
    rng = np.random.default_rng(1)
    variables = {"w": rng.normal(size=(3, 5)).astype(np.float32), "b": np.zeros(5, np.float32)}
    images = rng.integers(0, 256, (2, 70, 93, 3), dtype=np.uint8)
    whole = Segmenter(_pointwise_apply, variables, size_multiple=4, batch_size=2)
    tiled = Segmenter(
        _pointwise_apply,
        variables,
        size_multiple=4,
        batch_size=3,
        max_side=32,
        tile_size=32,
        tile_overlap=8,
    )
    assert not whole.is_tiled(70, 93) and tiled.is_tiled(70, 93)
    labels_w, probs_w = whole.predict(images, with_probabilities=True)
    labels_t, probs_t = tiled.predict(images, with_probabilities=True)
    expected = np.asarray(jax.nn.softmax(_pointwise_apply(variables, images), -1))
    np.testing.assert_allclose(probs_w, expected, atol=1e-6)
    np.testing.assert_allclose(probs_t, expected, atol=1e-6)
    np.testing.assert_array_equal(labels_t, expected.argmax(-1))
    np.testing.assert_array_equal(labels_w, labels_t)
    # Point-wise and mirror-symmetric: flip TTA changes nothing.
    flipped = Segmenter(
        _pointwise_apply,
        variables,
        size_multiple=4,
        tta_flip=True,
        max_side=32,
        tile_size=32,
        tile_overlap=8,
    )
    np.testing.assert_allclose(flipped.predict(images, with_probabilities=True)[1], expected, 1e-5)


@pytest.mark.parametrize(
    "length,tile,stride", [(70, 32, 24), (32, 32, 8), (100, 48, 48), (33, 8, 1)]
)
def test_tile_origins_cover_the_side(length, tile, stride):
    origins = tile_origins(length, tile, stride)
    covered = np.zeros(length, int)
    for o in origins:
        covered[o : o + tile] += 1
    assert covered.min() >= 1 and origins[0] == 0 and origins[-1] == length - tile
    assert all(b - a <= stride for a, b in zip(origins, origins[1:], strict=False))


def test_blend_window_ramps():
    w = blend_window(8, 10, overlap=3)
    assert w.shape == (8, 10) and w.min() > 0 and w.max() == 1.0
    np.testing.assert_allclose(w[0, 5], 0.25)  # (0 + 1) / (3 + 1) * 1
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert (blend_window(4, 4, overlap=0) == 1).all()


def test_one_tile_equals_the_padded_whole_image(loaded):
    images = np.random.default_rng(2).integers(0, 256, (2, 30, 29, 3), dtype=np.uint8)
    whole = Segmenter.from_run(loaded, batch_size=2)
    tiled = Segmenter.from_run(loaded, batch_size=2, max_side=28, tile_size=32, tile_overlap=8)
    assert tiled.is_tiled(30, 29)
    labels_w, probs_w = whole.predict(images, with_probabilities=True)
    labels_t, probs_t = tiled.predict(images, with_probabilities=True)
    np.testing.assert_allclose(probs_t, probs_w, atol=1e-5)
    np.testing.assert_array_equal(labels_w, _reference_predictions(loaded, images))


# ----------------------------------------------------------------------------
# Bad input: each a clear error naming the thing.
# ----------------------------------------------------------------------------


def test_missing_or_empty_workdir(tmp_path):
    with pytest.raises(WorkdirError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(WorkdirError, match="no config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WorkdirError, match="holds no checkpoint"):
        load_run(tmp_path)


def test_checkpoint_choices(tiny):
    with pytest.raises(CheckpointSpecError, match="'bestest'"):
        load_run(tiny.workdir, checkpoint="bestest")
    with pytest.raises(WorkdirError, match=r"no checkpoint of step 5.*has \[3, 6\]"):
        load_run(tiny.workdir, checkpoint=5)
    assert load_run(tiny.workdir, checkpoint="3").step == 3


def test_checkpoint_of_another_config(tiny, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["num_classes"] = 5
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleCheckpointError, match="another configuration"):
        load_run(workdir)
    config["num_classes"] = 13
    config["model"]["features"] = [4, 16]
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleCheckpointError, match=r"\(4, 4, 4, 16\)|16"):
        load_run(workdir)


def test_damaged_checkpoint_is_an_error_and_the_workdir_is_left_alone(tiny, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    # Loading reads only params and BatchNorm statistics: damage every data file, so the
    # part it reads is damaged too.
    files = [p for p in (workdir / "best").rglob("*") if p.is_file() and "state" in p.parts]
    for victim in [p for p in files if p.stat().st_size > 1024]:
        data = bytearray(victim.read_bytes())
        for i in range(len(data) // 3, len(data) // 3 + 16):
            data[i] ^= 0xFF
        victim.write_bytes(bytes(data))
    before = sorted(p.name for p in (workdir / "best").iterdir())
    with pytest.raises(CheckpointError, match="damaged"):
        load_run(workdir, checkpoint="best")
    assert sorted(p.name for p in (workdir / "best").iterdir()) == before


def test_split_that_does_not_exist(tiny, tmp_path):
    with pytest.raises(evaluate.SplitError, match="no split 'dev'"):
        evaluate.run_evaluation(
            tiny.workdir, _options(split="dev"), sources=tiny.sources, out_dir=tmp_path
        )
    with pytest.raises(evaluate.SplitError, match="empty"):
        evaluate.run_evaluation(
            tiny.workdir, _options(split="test"), sources={"test": []}, out_dir=tmp_path
        )


def test_eval_cli_prints_the_error_and_exits_non_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval.py"), f"--workdir={tmp_path / 'missing'}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert f"workdir {tmp_path / 'missing'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_cli_end_to_end_on_a_prepared_tfds_data_set(tiny, tmp_path):
    """eval.py opens config.dataset through TFDS (prepared on first use from the builder's
    dummy frames, 24x32) and its full-size counterpart resized_256 -> full."""
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
    # One gallery example: the pictures are asserted to exist, not what they show (drawing a
    # gallery row per example was 40% of the report's time).
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval.py"), f"--workdir={workdir}"]
        + ["--full_resolution", "--tta_flip", "--checkpoint=latest", "--progress=false"]
        + ["--num_gallery=1"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on lyft_udacity/resized_256 test: 6 images, flip TTA" in result.stdout
    report = json.loads((workdir / "eval" / "test" / "metrics.json").read_text())
    assert report["full_resolution"]["dataset"] == "lyft_udacity/full"
    assert report["full_resolution"]["sizes"] == {"24x32": 6}
    assert report["options"]["tta_flip"] and report["checkpoint"]["step"] == 6
    assert np.sum(report["confusion_matrix"]) == 6 * 32 * 32
    assert np.sum(report["full_resolution"]["confusion_matrix"]) <= 6 * 24 * 32
    for name in ("confusion_matrix_full", "gallery_full", "class_panels_full", "training_curves"):
        assert (workdir / "eval" / "test" / f"{name}.png").is_file()
    assert "confusion_matrix_full.png" in result.stdout  # the summary lists the files
    # The dummy frames keep the hood: the challenge's score is labelled so, and defined.
    assert "Lyft challenge score (hood included)" in result.stdout
    assert "Vehicles F2 (hood included)" in result.stdout
    assert report["challenge_hood"] == report["full_resolution"]["challenge_hood"] == "included"
    definition = "Lyft challenge score: the mean of Vehicles F2 and Road (Roads + RoadLines) F0.5"
    assert definition in result.stdout
    assert definition in (workdir / "eval" / "test" / "metrics.md").read_text()
    assert html.escape(definition) in (workdir / "eval" / "test" / "report.html").read_text()
    # The recipe the images were segmented with, on the console and in metrics.md.
    recipe = "scale resize, flip TTA on, BatchNorm adaptation off"  # trained on resized images
    assert f"Inference: {recipe}" in result.stdout
    assert f"- inference: {recipe}" in (workdir / "eval" / "test" / "metrics.md").read_text()
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------
# Report helpers.
# ----------------------------------------------------------------------------


def test_report_helpers():
    cm = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    norm = reports.row_normalise(cm)
    np.testing.assert_allclose(norm[0], [0.75, 0.25, 0])
    assert np.isnan(norm[1]).all()
    np.testing.assert_allclose(norm[2], [0.25, 0.25, 0.5])

    image = np.full((2, 2, 3), 200, np.uint8)
    label = np.array([[1, 2], [IGNORE_LABEL, 3]], np.uint8)
    prediction = np.array([[1, 1], [0, 3]], np.uint8)
    errors = reports.error_map(image, label, prediction)
    assert tuple(errors[0, 1]) == reports.WRONG_COLOR
    assert tuple(errors[1, 0]) == reports.IGNORED_COLOR
    assert tuple(errors[0, 0]) == (90, 90, 90)  # 200 * 0.45, grey
    comparison = reports.class_comparison(image, label, prediction, 1)
    assert tuple(comparison[0, 0]) == reports.TP_COLOR
    assert tuple(comparison[0, 1]) == reports.FP_COLOR
    assert reports.class_iou(label, prediction, 1) == pytest.approx(0.5)

    records = [
        {"step": 4, "split": "train", "loss": 2.0, "epoch": 1.0},
        {"step": 2, "split": "train", "loss": 3.0, "epoch": 0.5},
        {"step": 4, "split": "validation", "loss": 1.5, "mean_iou": 0.25},
        {"step": 6, "split": "validation", "loss": None, "mean_iou": 0.5},
    ]
    curves = reports.training_curves(records)
    np.testing.assert_array_equal(curves["train_loss"][0], [2, 4])
    np.testing.assert_array_equal(curves["train_loss"][1], [3.0, 2.0])
    np.testing.assert_array_equal(curves["validation_loss"][0], [4])
    np.testing.assert_array_equal(curves["validation_mean_iou"][1], [0.25, 0.5])
    assert curves["steps_per_epoch"] == 4.0
