"""Banded prediction (config.inference.band): a resize-scale whole with the band at native scale.

Oracle: the same run's predict at the resize scale on the whole frames, and at native scale
on the band's rows saved as images of their own, pasted together by hand; the output has
the input's size.
"""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.evaluation.test_eval import tiny_run
from tests.fake_data import make_examples
from unet_jax.deploy import banded, predict
from unet_jax.deploy.options import OptionError, recipe_of
from unet_jax.evaluation import evaluate, metrics

BAND = (0.3, 0.7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two frame sizes: both are segmented in one group at the resize scale."""
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(60, 80), (60, 80), (50, 70)]):
        image = np.clip(rng.integers(0, 256, (h, w, 3)) * 0.6 + 60, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def _labels(out):
    return {p.stem: np.asarray(Image.open(p)) for p in sorted((out / "labels").iterdir())}


def _run_with_band(tiny, tmp_path):
    """A copy of the tiny run whose inference recipe stores BAND."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["inference"] = {"band": list(BAND)}
    (workdir / "config.json").write_text(json.dumps(config))
    return workdir


def test_banded_predict_is_the_resized_whole_with_native_band_rows(tiny, frames, tmp_path):
    workdir = _run_with_band(tiny, tmp_path)
    result = predict.predict_files(
        workdir, [frames], tmp_path / "banded", progress=False, probabilities=True
    )
    assert result["options"]["band"] == list(BAND)
    got = _labels(tmp_path / "banded")

    # By hand: the plain run at the resize scale, and at native scale on the band strips.
    predict.predict_files(tiny.workdir, [frames], tmp_path / "whole", progress=False)
    strips = tmp_path / "strips"
    strips.mkdir()
    rows = {}
    for path in sorted(frames.iterdir()):
        image = np.asarray(Image.open(path))
        rows[path.stem] = banded.band_rows(BAND, image.shape[0])
        first, stop = rows[path.stem]
        Image.fromarray(image[first:stop]).save(strips / path.name)
    predict.predict_files(
        tiny.workdir,
        [strips],
        tmp_path / "band",
        progress=False,
        scale="native",
        probabilities=True,
    )
    whole, band = _labels(tmp_path / "whole"), _labels(tmp_path / "band")
    for name, image_path in ((p.stem, p) for p in sorted(frames.iterdir())):
        h, w = np.asarray(Image.open(image_path)).shape[:2]
        first, stop = rows[name]
        expected = whole[name].copy()
        expected[first:stop] = band[name]
        assert got[name].shape[:2] == (h, w)
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
        assert not np.array_equal(whole[name], expected)  # the band changed something
    record = {r["input"]: r for r in result["images"]}[str(frames / "0.png")]
    assert record["band_rows"] == [18, 42]
    probs = np.load(tmp_path / "banded" / "probabilities" / "0.npy")
    np.testing.assert_array_equal(probs[18:42], np.load(tmp_path / "band/probabilities/0.npy"))


def test_band_rows_cover_at_least_one_row_inside_the_image():
    assert banded.band_rows((280 / 600, 460 / 600), 600) == (280, 460)
    assert banded.band_rows((0.5, 0.5001), 10) == (5, 6)
    assert banded.band_rows((0.99, 1.0), 10) == (9, 10)


@pytest.mark.parametrize("band", [(0.7, 0.3), (0.2, 1.5), "top", (0.1,)])
def test_bad_band_in_a_recipe_names_the_field(band):
    with pytest.raises(OptionError, match="config.inference.band"):
        recipe_of({"inference": {"band": band}})


def test_band_flag_overrides_the_recipe_both_ways(tiny, frames, tmp_path):
    banded_run = _run_with_band(tiny, tmp_path)
    # --band=off on a banded run: the plain resize-scale prediction.
    off = predict.predict_files(banded_run, [frames], tmp_path / "off", progress=False, band="off")
    predict.predict_files(tiny.workdir, [frames], tmp_path / "plain", progress=False)
    assert off["options"]["band"] is None
    got, plain = _labels(tmp_path / "off"), _labels(tmp_path / "plain")
    assert got.keys() == plain.keys()
    for name, labels in plain.items():
        np.testing.assert_array_equal(got[name], labels)
    # --band=TOP,BOTTOM on a run without one: what the stored recipe gives.
    predict.predict_files(tiny.workdir, [frames], tmp_path / "flag", progress=False, band="0.3,0.7")
    predict.predict_files(banded_run, [frames], tmp_path / "recipe", progress=False)
    flag, recipe = _labels(tmp_path / "flag"), _labels(tmp_path / "recipe")
    assert flag.keys() == recipe.keys()
    for name, labels in recipe.items():
        np.testing.assert_array_equal(flag[name], labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"band": "0.3"}, "band must be"),
        ({"band": "0.7,0.3"}, "0 <= top < bottom <= 1"),
        ({"band": "0.3,0.7", "scale": "native"}, "applies at scale resize"),
    ],
)
def test_bad_band_flag_is_one_option_error(tiny, frames, tmp_path, kwargs, match):
    with pytest.raises(OptionError, match=match):
        predict.predict_files(tiny.workdir, [frames], tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_eval_full_resolution_scores_what_banded_predict_writes(tiny, tmp_path):
    """eval.py --full_resolution --band: the confusion matrix of predict's banded labels."""
    full = {"test": make_examples(3, size=(60, 80), seed=9)}
    report = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(
            split="test",
            full_resolution=True,
            scale="resize",
            band="0.3,0.7",
            pictures=False,
            progress=False,
        ),
        sources=tiny.sources,
        full_sources=full,
        out_dir=tmp_path / "eval",
    )
    assert report["options"]["band"] == list(BAND)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, example in enumerate(full["test"]):
        Image.fromarray(example["image"]).save(folder / f"{i}.png")
    predict.predict_files(tiny.workdir, [folder], tmp_path / "pred", progress=False, band="0.3,0.7")
    labels = _labels(tmp_path / "pred")
    expected = sum(
        metrics.confusion_counts(
            labels[str(i)][None, ..., 0],  # CARLA's label format: the id in the red channel
            example["label"][None, ..., 0],
            num_classes=13,
        )
        for i, example in enumerate(full["test"])
    )
    np.testing.assert_array_equal(report["full_resolution"]["confusion_matrix"], expected)


def test_eval_band_needs_the_full_resolution_pass():
    with pytest.raises(OptionError, match="band='0.3,0.7' applies to the full-resolution pass"):
        evaluate.EvalOptions(band="0.3,0.7")
