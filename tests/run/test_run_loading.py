"""Loading a run is read-only and params-only; Segmenter options are immutable; one resize."""

import dataclasses
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.evaluation.test_eval import tiny_run
from unet_jax.data import image_ops
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.run import checkpointing
from unet_jax.run.loading import load_run, make_apply_fn


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def test_loading_writes_nothing_and_reads_only_the_model_variables(tiny, tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    shutil.rmtree(workdir / "checkpoints")  # only best/ remains
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    requested = []
    real_restore = checkpointing.ocp.args.PyTreeRestore

    def spy(*, item, **kwargs):
        requested.append(sorted(item))
        return real_restore(item=item, **kwargs)

    monkeypatch.setattr(checkpointing.ocp.args, "PyTreeRestore", spy)
    run = load_run(workdir, checkpoint="best")
    assert requested == [["batch_stats", "params"]]  # no opt_state, step or rng
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before
    assert set(run.variables) == {"params", "batch_stats"}
    # The same numbers as the trainer's own (full, verified) restore.
    reference = load_run(tiny.workdir, checkpoint="best")
    for a, b in zip(
        np.asarray(run.variables["params"]["Conv_0"]["kernel"]).ravel(),
        np.asarray(reference.variables["params"]["Conv_0"]["kernel"]).ravel(),
        strict=True,
    ):
        assert a == b


def test_a_workdir_given_relative_to_the_current_directory_loads(tiny, tmp_path, monkeypatch):
    # As users type it: `python eval.py --workdir runs/mine` (orbax misreads relative paths).
    shutil.copytree(tiny.workdir, tmp_path / "runs" / "mine")
    monkeypatch.chdir(tmp_path)
    for checkpoint in ("best", "latest"):
        run = load_run("runs/mine", checkpoint=checkpoint)
        reference = load_run(tiny.workdir, checkpoint=checkpoint)
        np.testing.assert_array_equal(
            run.variables["params"]["Conv_0"]["kernel"],
            reference.variables["params"]["Conv_0"]["kernel"],
        )


def test_a_damaged_variable_is_caught_by_its_digest(tiny, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny.workdir, workdir)
    meta = next((workdir / "best").glob("*/meta/metadata"))
    meta.write_text(meta.read_text().replace('"variables_sha256": "', '"variables_sha256": "0'))
    with pytest.raises(checkpointing.CheckpointError, match="do not match the SHA-256"):
        load_run(workdir, checkpoint="best")


def test_segmenter_options_cannot_change_after_construction(tiny):
    run = load_run(tiny.workdir, checkpoint="best")
    segmenter = Segmenter(make_apply_fn(run.model), run.variables, size_multiple=4)
    with pytest.raises(AttributeError):
        segmenter.batch_size = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        segmenter.options.tta_flip = True  # type: ignore[misc]
    assert segmenter.options.tta_flip is False


@pytest.mark.parametrize("box", [None, (3.0, 2.5, 40.0, 30.0), (0.0, 0.0, 17.3, 9.9)])
@pytest.mark.parametrize("size", [(16, 24), (50, 7)])
def test_one_resize_matches_pil_for_images_and_labels(box, size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (33, 45, 3), dtype=np.uint8)
    label = rng.integers(0, 13, (33, 45), dtype=np.uint8)
    h, w = size
    pil_box = box or (0, 0, 45, 33)
    for method, pil_method in image_ops.RESIZE_METHODS.items():
        expected = np.asarray(Image.fromarray(image).resize((w, h), pil_method, box=pil_box))
        got = image_ops.resize(image, height=h, width=w, method=method, box=box)
        np.testing.assert_array_equal(got, expected)
    expected = np.asarray(
        Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST, box=pil_box)
    )
    got = image_ops.resize(label, height=h, width=w, method="nearest", box=box)
    np.testing.assert_array_equal(got, expected)
    # Any dtype and channel count under "nearest": probabilities stay aligned with labels.
    probs = rng.random((33, 45, 5)).astype(np.float32)
    probs[..., 0] = label
    resized = image_ops.resize(probs, height=h, width=w, method="nearest", box=box)
    np.testing.assert_array_equal(resized[..., 0], expected)
