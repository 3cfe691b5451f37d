"""A run's stored inference recipe (config.inference): the default of predict, eval.py and
the export sidecars; flags override it; BatchNorm adaptation leaves the checkpoint as is.

Oracle: the same command with the same options given as flags on the run without a recipe.
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.evaluation.test_eval import tiny_run
from unet_jax.deploy import export, predict
from unet_jax.deploy.options import OptionError, SegmenterOptions
from unet_jax.evaluation import evaluate

RECIPE = {"scale": "native", "tta_flip": True, "tta_scales": [1.0, 0.5], "adapt_bn": "set"}
RECIPE_FLAGS = ["--scale=native", "--tta_flip", "--tta_scales=1,0.5", "--adapt_bn=set"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def with_recipe(tiny, tmp_path_factory):
    """A copy of the tiny run whose config stores RECIPE."""
    workdir = tmp_path_factory.mktemp("recipe") / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["inference"] = RECIPE
    (workdir / "config.json").write_text(json.dumps(config))
    return workdir


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(11)
    for i, (h, w) in enumerate([(30, 45), (30, 45), (40, 36)]):
        bright = np.clip(rng.integers(0, 256, (h, w, 3)) * 0.5 + 90, 0, 255).astype(np.uint8)
        Image.fromarray(bright).save(folder / f"{i}.png")
    return folder


def _outputs(out):
    manifest = json.loads((out / "predictions.json").read_text())
    labels = {p.stem: np.asarray(Image.open(p)) for p in sorted((out / "labels").iterdir())}
    probs = {p.stem: np.load(p) for p in sorted((out / "probabilities").iterdir())}
    return manifest, labels, probs


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_predict_with_a_stored_recipe_equals_predict_with_its_flags(
    tiny, with_recipe, frames, tmp_path
):
    before = _digest(tiny.workdir)
    common = [str(frames), "--progress=false", "--probabilities"]
    assert predict.main(common + ["--workdir", str(with_recipe), "--out", str(tmp_path / "r")]) == 0
    flags = common + RECIPE_FLAGS + ["--workdir", str(tiny.workdir), "--out", str(tmp_path / "f")]
    assert predict.main(flags) == 0
    stored, flagged = _outputs(tmp_path / "r"), _outputs(tmp_path / "f")
    for name in stored[1]:
        np.testing.assert_array_equal(stored[1][name], flagged[1][name])
        np.testing.assert_array_equal(stored[2][name], flagged[2][name])
    options = stored[0]["options"]
    assert options == flagged[0]["options"]
    assert options["scale"] == "native" and options["tta_flip"] is True
    assert options["tta_scales"] == [1.0, 0.5] and options["adapt_bn"] == "set"
    # Adaptation and TTA change the prediction: the recipe was applied.
    plain = predict.predict_files(tiny.workdir, [frames], tmp_path / "p", progress=False)
    assert plain["options"]["adapt_bn"] == "off" and plain["options"]["scale"] == "resize"
    # BatchNorm adaptation never touches the checkpoint (or anything in the run).
    assert _digest(tiny.workdir) == before


def test_flags_override_the_stored_recipe(tiny, with_recipe, frames, tmp_path):
    off = [
        "--scale=resize",
        "--tta_flip=false",
        "--tta_scales=1",
        "--adapt_bn=off",
        "--progress=false",
    ]
    assert (
        predict.main(
            [str(frames), "--workdir", str(with_recipe), "--out", str(tmp_path / "o")] + off
        )
        == 0
    )
    assert (
        predict.main(
            [
                str(frames),
                "--workdir",
                str(tiny.workdir),
                "--out",
                str(tmp_path / "d"),
                "--progress=false",
            ]
        )
        == 0
    )
    for name in ("0.png", "1.png", "2.png"):
        a = np.asarray(Image.open(tmp_path / "o" / "labels" / name))
        b = np.asarray(Image.open(tmp_path / "d" / "labels" / name))
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # two evaluations at two resolutions and an export
def test_eval_and_the_export_sidecar_use_the_stored_recipe(tiny, with_recipe, tmp_path):
    report = evaluate.run_evaluation(
        with_recipe,
        evaluate.EvalOptions(split="test", pictures=False, progress=False, full_resolution=True),
        sources=tiny.sources,
        out_dir=tmp_path / "eval",
    )
    flagged = evaluate.run_evaluation(
        tiny.workdir,
        evaluate.EvalOptions(
            split="test",
            pictures=False,
            progress=False,
            full_resolution=True,
            scale="native",
            segment=SegmenterOptions(tta_flip=True, tta_scales=(1.0, 0.5), adapt_bn="set"),
        ),
        sources=tiny.sources,
        out_dir=tmp_path / "flags",
    )
    assert report["options"] == flagged["options"]
    assert report["confusion_matrix"] == flagged["confusion_matrix"]
    assert (
        report["full_resolution"]["confusion_matrix"]
        == flagged["full_resolution"]["confusion_matrix"]
    )
    _, side = export.export_run(with_recipe, tmp_path / "m.jaxexport", platforms=["cpu"])
    inference = json.loads(side.read_text())["inference"]
    assert inference["tta_scales"] == [1.0, 0.5] and inference["adapt_bn"] == "set"
    assert inference["scale"] == "native" and "not exportable" in inference["note"]


def test_a_bad_recipe_names_the_field(tiny, frames, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["inference"] = {"tta_flop": True}
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(OptionError, match="config.inference.tta_flop"):
        predict.predict_files(workdir, [frames], tmp_path / "o", progress=False)
