"""The one evaluator: the training loop's validation and eval.py score a run alike.

Oracle: the confusion matrix counted by hand (numpy ``bincount``) from ``model.apply`` on
the tile grid cut by hand, each pixel taken from the first tile (row-major) that covers it.
"""

import numpy as np
import pytest

from datasets.lyft_udacity.classes import CARLA_CLASSES
from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.evaluation import evaluate
from unet_jax.evaluation.evaluator import Evaluator, Geometry
from unet_jax.run.loading import load_run
from unet_jax.run.metric_writers import read_metrics
from unet_jax.train import loop as train_lib

TILE = 32
C = 13


def _validation_examples() -> list[dict]:
    # Sizes that need moved-back last tiles, one tile exactly, and padding (smaller than a tile).
    out = []
    for seed, size in enumerate(((48, 40), (32, 32), (20, 70), (64, 33))):
        out += make_examples(1, size=size, seed=10 + seed)
    return out


def _starts(length: int) -> list[int]:
    return [*range(0, length - TILE, TILE), length - TILE] if length > TILE else [0]


def _hand_confusion(run, examples) -> np.ndarray:
    cm = np.zeros((C, C), np.int64)
    for example in examples:
        image, label = example["image"], example["label"][..., 0]
        h, w = label.shape
        canvas = np.zeros((max(h, TILE), max(w, TILE), 3), np.uint8)
        canvas[:h, :w] = image
        prediction = np.zeros((h, w), np.int64)
        done = np.zeros((h, w), bool)
        for y in _starts(h):
            for x in _starts(w):
                tile = canvas[y : y + TILE, x : x + TILE]
                logits = np.asarray(run.model.apply(run.variables, tile[None], train=False))[0]
                tile_pred = logits.argmax(-1)[: h - y, : w - x]
                region = (slice(y, y + TILE), slice(x, x + TILE))
                fresh = ~done[region]
                prediction[region][fresh] = tile_pred[fresh]
                done[region] = True
        assert done.all()
        valid = label != IGNORE_LABEL
        cm += np.bincount(
            label[valid].astype(np.int64) * C + prediction[valid], minlength=C * C
        ).reshape(C, C)
    return cm


def test_crop_trained_run_validation_equals_eval_py_in_the_same_geometry(tmp_path):
    config = tiny.get_config()
    config.input_mode = "crop"
    config.num_train_steps = 3  # one validation, at the last step
    sources = {"train": make_examples(8, size=(40, 48), seed=1)}
    sources["validation"] = _validation_examples()
    workdir = tmp_path / "run"
    result = train_lib.train_and_evaluate(config, workdir, sources=sources, classes=CARLA_CLASSES)

    run = load_run(workdir, checkpoint="latest")
    want = _hand_confusion(run, sources["validation"])
    # The training loop (device eval step, tiles padded into batches) ...
    np.testing.assert_array_equal(result["validation"]["confusion"], want)
    # ... and eval.py (the loaded run on the host) on the same checkpoint and geometry.
    report = evaluate.run_evaluation(
        workdir,
        evaluate.EvalOptions(
            split="validation", checkpoint="latest", progress=False, pictures=False
        ),
        sources=sources,
        out_dir=tmp_path / "eval",
    )
    assert report["resolution"] == "native, 32x32 tiles"
    np.testing.assert_array_equal(report["confusion_matrix"], want)
    (logged,) = [r for r in read_metrics(workdir) if r["split"] == "validation"]
    assert logged["step"] == report["checkpoint"]["step"] == 3
    assert report["mean_iou"] == pytest.approx(logged["mean_iou"], abs=1e-9)


def test_native_geometry_batches_equal_sizes_and_counts_host_predictions():
    examples = make_examples(3, size=(20, 24), seed=4) + make_examples(2, size=(16, 16), seed=5)
    evaluator = Evaluator(
        examples, geometry=Geometry("native"), class_names=[f"c{i}" for i in range(C)], batch_size=2
    )
    shapes = [b["image"].shape[:3] for b in evaluator.batches()]
    assert shapes == [(2, 20, 24), (1, 20, 24), (2, 16, 16)]

    def red_mod_c(batch):  # a point-wise "model"
        return {
            "prediction": batch["image"][..., 0].astype(np.int64) % C,
            "scale": "native",
            "tiled": False,
        }

    seen = []
    results = evaluator.run(red_mod_c, on_example=lambda **kw: seen.append(kw["index"]))
    want = np.zeros((C, C), np.int64)
    for e in examples:
        label, pred = e["label"][..., 0].astype(np.int64), e["image"][..., 0] % C
        want += np.bincount(label.ravel() * C + pred.ravel(), minlength=C * C).reshape(C, C)
    np.testing.assert_array_equal(results["confusion"], want)
    assert seen == [0, 1, 2, 3, 4]
    assert results["sizes"] == {"20x24": 3, "16x16": 2} and results["scales"] == {"native": 5}
    assert "loss" not in results and results["num_examples"] == 5


@pytest.mark.parametrize(
    "scale, size", [("resize", None), ("tiles", (32, 32)), ("blend", (32, 32))]
)
def test_bad_geometry_is_rejected(scale, size):
    with pytest.raises(ValueError, match="scale"):
        Geometry(scale, size)
