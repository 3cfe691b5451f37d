"""configs/auto.py's planning rules on constructed fingerprints, overrides, plan.json."""

import json
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from tests.fake_data import make_examples
from unet_jax.configs import auto
from unet_jax.data.fingerprint import Fingerprint
from unet_jax.errors import ConfigError
from unet_jax.run import info as run_info
from unet_jax.train import auto_plan

CPU = auto_plan.Machine("cpu", devices=1, cores=2)


def _fp(**fields):
    base = dict(
        images=500,
        groups=500,
        median_size=(600, 800),
        min_size=(600, 800),
        max_size=(600, 800),
        class_frequency=(0.5, 0.3, 0.2),
        class_thickness=(40.0, 30.0, 20.0),
        class_region_px=(9000.0, 4000.0, 2500.0),
    )
    return Fingerprint(**{**base, **fields})


def test_thin_rare_structures_raise_the_resolution_on_an_accelerator_only():
    gpu = auto_plan.Machine("gpu", devices=1, cores=16)
    thin_fp = _fp(class_frequency=(0.6, 0.39, 0.01), class_thickness=(40.0, 30.0, 2.0))
    thick = auto_plan.plan_input(_fp(), gpu)
    thin = auto_plan.plan_input(thin_fp, gpu)
    assert thick.fields["input_mode"] == thin.fields["input_mode"] == "resize"
    assert thick.fields["image_size"] == (192, 256)  # 256 on the long side
    # 2 px at 800 wide needs 600 px to keep 1.5: capped at twice the base, 512.
    assert thin.fields["image_size"] == (384, 512)
    assert "thinnest" in thin.reason
    # A CPU keeps 128 on the long side and says why.
    on_cpu = auto_plan.plan_input(thin_fp, CPU)
    assert on_cpu.fields["image_size"] == auto_plan.plan_input(_fp(), CPU).fields["image_size"]
    assert on_cpu.fields["image_size"] == (96, 128)
    assert "not raised on a CPU" in on_cpu.reason


def test_rare_classes_with_wide_regions_get_larger_crops():
    sizes = dict(min_size=(500, 600), max_size=(900, 1200), median_size=(700, 900))
    small = auto_plan.plan_input(_fp(**sizes), CPU)
    assert small.fields == {"input_mode": "crop", "image_size": (128, 128)}
    wide = auto_plan.plan_input(
        _fp(**sizes, class_frequency=(0.6, 0.39, 0.01), class_region_px=(9000.0, 4000.0, 200.0**2)),
        CPU,
    )
    assert wide.fields["image_size"] == (208, 208)  # a whole 200-px region fits
    assert "rare" in wide.reason


def test_crops_never_exceed_the_smallest_image():
    got = auto_plan.plan_input(
        _fp(
            min_size=(100, 90),
            max_size=(900, 1200),
            class_frequency=(0.6, 0.39, 0.01),
            class_region_px=(1.0, 1.0, 300.0**2),
        ),
        CPU,
    )
    assert got.fields["image_size"] == (80, 80)


def test_few_images_get_stronger_augmentation():
    many = auto_plan.plan_augment(_fp(), dataset="folder").fields
    few = auto_plan.plan_augment(_fp(images=40, groups=40), dataset="folder").fields
    few_groups = auto_plan.plan_augment(_fp(groups=8), dataset="folder").fields
    assert few["augment.min_scale"] < many["augment.min_scale"]
    assert few["augment.max_scale"] > many["augment.max_scale"]
    assert few["augment.brightness"] > many["augment.brightness"]
    assert few_groups == few
    assert auto_plan.plan_augment(_fp(), dataset="aerial").fields["augment.rot90"]
    assert not many["augment.rot90"]


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_batch_is_a_multiple_of_the_devices(devices):
    machine = auto_plan.Machine("cpu", devices=devices, cores=2)
    batch = auto_plan.plan_batch(_fp(), machine).fields["batch_size"]
    assert batch % devices == 0 and batch == 8 * devices
    few = auto_plan.plan_batch(_fp(images=7), machine).fields["batch_size"]
    assert few % devices == 0 and 0 < few <= 7


def test_fewer_images_than_devices_is_a_config_error():
    with pytest.raises(ConfigError, match="fewer than the 4 devices"):
        auto_plan.plan_batch(_fp(images=3), auto_plan.Machine("cpu", devices=4, cores=2))


def test_an_accelerator_gets_bfloat16_and_larger_batches():
    gpu = auto_plan.Machine("gpu", devices=1, cores=16)
    assert auto_plan.plan_compute(gpu).fields["model.dtype"] == "bfloat16"
    assert auto_plan.plan_compute(CPU).fields == {"model.dtype": "float32", "worker_count": 0}
    assert auto_plan.plan_batch(_fp(), gpu).fields["batch_size"] == 32


def test_the_widest_net_that_sees_enough_pixels_is_chosen():
    # Step times per width: the second sees enough pixels in 600 s, the third does not.
    times = {256: 0.05, 512: 0.2, 1024: 2.0}
    pixels = 8 * 128 * 128
    decision, probed = auto_plan.plan_widths(
        training_s=600.0, step_s_of=lambda f, b: times[b], pixels_per_step=pixels
    )
    assert 600 / 0.2 * pixels >= auto_plan.MIN_TRAINING_PIXELS > 600 / 2.0 * pixels
    assert decision.fields["model.bridge_features"] == 512
    assert [p["bridge"] for p in probed] == [256, 512, 1024]
    narrow, probed = auto_plan.plan_widths(
        training_s=10.0, step_s_of=lambda f, b: times[b], pixels_per_step=pixels
    )
    assert narrow.fields["model.bridge_features"] == 256  # the narrowest, even if short
    assert narrow.reason.startswith("narrowest; sees only")
    assert decision.reason.startswith("widest that sees")
    assert len(probed) == 1


def _plan(tmp_path, fixed=(), **overrides):
    config = auto.get_config()
    for key, value in overrides.items():
        *parents, name = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[name] = value
    sources = {"train": make_examples(40, size=(48, 64), seed=1)}
    return auto_plan.plan_config(
        config,
        workdir=tmp_path,
        fixed=fixed,
        sources=sources,
        num_classes=13,
        machine=CPU,
        step_s_of=lambda c: 0.01 * c.model.bridge_features / 256,
        log=lambda *_: None,
    )


def test_overrides_beat_the_plan(tmp_path):
    planned = _plan(
        tmp_path,
        fixed=("batch_size", "model.features", "augment.min_scale"),
        batch_size=4,
        **{"model.features": (8, 16, 32, 64), "augment.min_scale": 0.9},
    )
    assert planned.batch_size == 4
    assert tuple(planned.model.features) == (8, 16, 32, 64)
    assert planned.augment.min_scale == 0.9
    assert planned.augment.max_scale == 1.5  # planned (40 images: strong)
    assert planned.auto is False
    rows = json.loads((tmp_path / "plan.json").read_text())["decisions"]
    assert {r["field"]: r["reason"] for r in rows}["batch_size"] == "given"


def test_plan_json_and_config_json_agree_and_reproduce_the_run(tmp_path):
    planned = _plan(tmp_path)
    run_info.write(tmp_path, planned)
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert json.loads((tmp_path / "plan.json").read_text())["config"] == recorded
    again = auto.get_config(str(tmp_path / "plan.json"))  # --config=auto.py:plan.json
    assert again.to_dict() == planned.to_dict()


def test_short_budgets_take_the_narrowest_widths_unprobed(tmp_path):
    def no_probe(config):
        raise AssertionError("probed")

    config = auto.get_config()
    config.time_budget_minutes = 5.0
    planned = auto_plan.plan_config(
        config,
        workdir=tmp_path,
        fixed=(),
        sources={"train": make_examples(40, size=(48, 64), seed=1)},
        num_classes=13,
        machine=CPU,
        step_s_of=no_probe,
        log=lambda *_: None,
    )
    assert (tuple(planned.model.features), planned.model.bridge_features) == auto_plan.WIDTHS[0]


def test_auto_plan_needs_a_budget(tmp_path):
    with pytest.raises(ConfigError, match="time_budget_minutes"):
        _plan(tmp_path, time_budget_minutes=0.0)


def test_command_line_overrides_beat_the_plan(monkeypatch, tmp_path):
    # As train.py reads them: the fields config_flags saw on the command line are kept.
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", "unet_jax/configs/auto.py", flag_values=values, lock_config=True
    )
    argv = [
        "train.py",
        "--config=unet_jax/configs/auto.py",
        "--config.image_size=(64,64)",
        "--config.augment.rot90=True",
        "--config.time_budget_minutes=20",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    values(argv)
    planned = auto_plan.plan_config(
        values.config,
        workdir=tmp_path,
        fixed=config_flags.get_override_values(values["config"]),
        sources={"train": make_examples(40, size=(48, 64), seed=1)},
        num_classes=13,
        machine=CPU,
        step_s_of=lambda c: 0.01,
        log=lambda *_: None,
    )
    assert tuple(planned.image_size) == (64, 64)
    assert planned.augment.rot90 is True
    assert planned.input_mode == "resize"  # planned: the images are all 48x64
    rows = json.loads((tmp_path / "plan.json").read_text())["decisions"]
    given = {r["field"] for r in rows if r["reason"] == "given"}
    assert given == {"image_size", "augment.rot90"}


def test_rare_classes_in_crop_mode_get_class_aware_crops():
    sizes = dict(min_size=(600, 800), max_size=(1400, 2000))
    rare = _fp(**sizes, class_frequency=(0.005, 0.98, 0.015))
    got = auto_plan.plan_sampling(rare, crop=True).fields
    # Class 0 is rare too but is the background: never aimed at.
    assert got == {"augment.foreground_share": 1 / 3, "augment.foreground_classes": (2,)}
    assert auto_plan.plan_sampling(_fp(**sizes), crop=True).fields["augment.foreground_share"] == 0
    assert auto_plan.plan_sampling(rare, crop=False).fields["augment.foreground_share"] == 0
    decisions = auto_plan.plan_input(rare, CPU)
    assert decisions.fields["input_mode"] == "crop"
