"""validate_config: every bad value is named with what is allowed, before any work."""

import subprocess
import sys

import pytest

import datasets
from tests.conftest import REPO_ROOT
from unet_jax.configs import aerial_cpu_unlabeled_void, default, demo, folder, tiny
from unet_jax.data.classes import ClassSet
from unet_jax.train.config_checks import ConfigError, validate_against_data, validate_config


@pytest.mark.parametrize("module", [default, demo, folder, tiny, aerial_cpu_unlabeled_void])
def test_shipped_configs_are_valid(module):
    validate_config(module.get_config(), process_count=1, local_device_count=4)


BAD = [
    ("best_metric", "miou", r"config.best_metric='miou': choose one of mean_iou"),
    ("best_mode", "Max", r"config.best_mode='Max': choose one of max, min"),
    ("loss", "dice_cee", r"config.loss='dice_cee': choose one of dice, ce, dice_ce"),
    ("optimizer", "adamw", r"config.optimizer='adamw'"),
    ("schedule", "cosine", r"config.schedule='cosine'"),
    ("driver", "jit", r"config.driver='jit'"),
    ("input_mode", "tiles", r"config.input_mode='tiles'"),
    ("void_classes", ("Unlabeled", ""), r"config.void_classes=\('Unlabeled', ''\): a tuple"),
    ("model.output_activation", "relu", r"config.model.output_activation='relu'"),
    ("model.upsample", "bilinear", r"config.model.upsample='bilinear'"),
    ("model.dtype", "fp16", r"config.model.dtype='fp16'"),
    ("image_size", (100, 128), r"config.image_size=\(100, 128\): .* multiples of 16"),
    ("eval_batch_size", 6, r"config.eval_batch_size=6: must be a multiple of the 4 devices"),
    ("batch_size", 0, r"config.batch_size=0: must be a positive integer"),
    ("model.dropout_rate", 1.5, r"config.model.dropout_rate=1.5"),
    ("dataset", "lyft/full", r"config.dataset='lyft/full': use 'lyft_udacity/<config>'"),
    ("worker_count", -1, r"config.worker_count=-1: must be an integer >= 0"),
    ("seed", 2**32, r"config.seed=4294967296: must be an integer in \[0, 2\*\*32\)"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD)
def test_bad_values_name_field_value_and_choices(field, value, message):
    config = default.get_config()
    target = config
    *parents, leaf = field.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(
            config, process_count=1, local_device_count=4, builders=datasets.prepare_dataset
        )


def test_bad_augmentation_is_a_config_error_naming_the_transform():
    config = default.get_config()
    config.augment.enabled = True
    validate_config(config, process_count=1, local_device_count=4)
    config.augment.flip_prob = 1.5
    with pytest.raises(ConfigError, match=r"config.augment: RandomHorizontalFlip: p must be in"):
        validate_config(config, process_count=1, local_device_count=4)
    config.augment.enabled = False  # settings of a disabled augmentation are not used
    validate_config(config, process_count=1, local_device_count=4)


def test_foreground_metric_needs_binary_data():
    config = folder.get_config()
    config.best_metric = "foreground_iou"
    validate_against_data(config, ClassSet.from_names(["bg", "fg"]))
    with pytest.raises(ConfigError, match="needs a binary data set; this one has 3 classes"):
        validate_against_data(config, ClassSet.from_names(["a", "b", "c"]))


def test_command_line_exits_2_with_the_message_before_any_work(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            "unet_jax/configs/demo.py",
            "--workdir",
            str(tmp_path / "run"),
            "--config.best_metric=miou",
            f"--config.data_dir={tmp_path / 'data'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config.best_metric='miou': choose one of" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was prepared
