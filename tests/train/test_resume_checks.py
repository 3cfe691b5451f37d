"""Resuming a workdir with another config or other data is refused in words (no JAX)."""

import json

import pytest

from unet_jax.configs import folder as folder_config
from unet_jax.data.classes import ClassSet
from unet_jax.train import resume_checks
from unet_jax.train.resume_checks import ResumeMismatchError

BINARY = ClassSet.from_names(["background", "foreground"], label_format="binary")


def _config(**overrides):
    config = folder_config.get_config()
    config.folder = "/data/a"
    config.model.features = (4, 8)
    for key, value in overrides.items():
        target, _, name = key.rpartition(".")
        (config[target] if target else config)[name] = value
    return config


def _workdir(tmp_path, config, classes=BINARY, *, with_checkpoint=True):
    """A workdir as training leaves it: config.json, classes in a checkpoint's meta."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(config.to_json())
    if with_checkpoint:
        meta = workdir / "checkpoints" / "3" / "meta"
        meta.mkdir(parents=True)
        (meta / "metadata").write_text(json.dumps({"classes": classes.to_json()}))
    return workdir


def test_other_classes_are_named_with_the_way_out(tmp_path):
    workdir = _workdir(tmp_path, _config())
    three = ClassSet.numbered(3)
    with pytest.raises(ResumeMismatchError) as error:
        resume_checks.check_same_model(_config(), three, workdir)
    assert str(error.value) == (
        f"workdir {workdir} was trained with 2 classes (background, foreground); the config "
        f"has 3 classes (class0, class1, class2): use a new --workdir, or "
        f"--config.init_from={workdir} to start from its weights"
    )


def test_other_widths_and_optimizer_are_named(tmp_path):
    workdir = _workdir(tmp_path, _config())
    other = _config(**{"model.features": (8, 16), "optimizer": "sgd"})
    with pytest.raises(ResumeMismatchError, match=r"trained with optimizer='adam' and "
                       r"model.features=\(4, 8\); the config has optimizer='sgd' and "
                       r"model.features=\(8, 16\)"):  # fmt: skip
        resume_checks.check_same_model(other, BINARY, workdir)


def test_widths_of_an_unused_encoder_and_other_fields_do_not_count(tmp_path):
    workdir = _workdir(tmp_path, _config())
    same = _config(**{"model.decoder_features": (8, 8, 8, 8, 8), "learning_rate": 0.5})
    resume_checks.check_same_model(same, BINARY, workdir)


def test_a_workdir_without_checkpoints_takes_any_config(tmp_path):
    workdir = _workdir(tmp_path, _config(), with_checkpoint=False)
    resume_checks.check_same_model(_config(**{"model.features": (8, 16)}), BINARY, workdir)
    resume_checks.check_same_data(_config(folder="/data/b"), workdir)


def test_another_folder_is_refused_unless_allowed(tmp_path, monkeypatch):
    workdir = _workdir(tmp_path, _config())
    with pytest.raises(ResumeMismatchError, match=r"was trained on folder='/data/a'; the "
                       r"config has folder='/data/b'.*--config.allow_new_data=True"):  # fmt: skip
        resume_checks.check_same_data(_config(folder="/data/b"), workdir)
    resume_checks.check_same_data(_config(folder="/data/b", allow_new_data=True), workdir)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    local = _workdir(tmp_path / "data", _config(folder=str(tmp_path / "data")))
    resume_checks.check_same_data(_config(folder="data"), local)  # the same folder, relative
