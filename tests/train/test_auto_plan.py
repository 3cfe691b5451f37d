"""configs/auto.py's planning rules on constructed fingerprints, overrides, plan.json."""

import json
import sys

import jax
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


def test_one_size_images_whose_classes_all_vanish_when_resized_are_cropped_at_native_scale():
    # Nuclei-like: 520x696 frames, one foreground class 4.8 px thick. At 128 on the long
    # side (scale 128/696) it keeps 0.88 px < 1.5: native-scale crops of 128.
    nuclei = _fp(
        median_size=(520, 696),
        min_size=(520, 696),
        max_size=(520, 696),
        class_frequency=(0.81, 0.19),
        class_thickness=(30.0, 4.8),
        class_region_px=(9e4, 300.0),
    )
    planned = auto_plan.plan_input(nuclei, CPU)
    assert planned.fields == {"input_mode": "crop", "image_size": (128, 128)}
    assert "native-scale crops of 128" in planned.reason
    # One class that survives the resize (30 * 128/800 = 4.8 px) keeps whole-image resizing,
    # even beside a thin one (2 * 128/800 = 0.32 px).
    thin_fp = _fp(class_frequency=(0.6, 0.39, 0.01), class_thickness=(40.0, 30.0, 2.0))
    assert auto_plan.plan_input(thin_fp, CPU).fields["input_mode"] == "resize"
    # On an accelerator the raise keeps the class (4.8 px at scale 1.5/4.8 is 1.5 px).
    gpu = auto_plan.Machine("gpu", devices=1, cores=16)
    assert auto_plan.plan_input(nuclei, gpu).fields["input_mode"] == "resize"


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


def _plan(tmp_path, fixed=(), step_s_of=None, elapsed_s=lambda: 0.0, **overrides):
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
        step_s_of=step_s_of or (lambda c: 0.01 * c.model.bridge_features / 256),
        elapsed_s=elapsed_s,
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


def test_a_given_width_stays_in_the_table(tmp_path):
    planned = _plan(tmp_path, fixed=("model.features",), **{"model.features": (8, 16, 32, 64)})
    rows = {r["field"]: r for r in json.loads((tmp_path / "plan.json").read_text())["decisions"]}
    assert rows["model.features"]["reason"] == "given"
    assert tuple(rows["model.features"]["value"]) == (8, 16, 32, 64)
    # The other half of the pair is the config's, not probed, and says so.
    assert rows["model.bridge_features"]["value"] == planned.model.bridge_features
    assert rows["model.bridge_features"]["value"] == auto.get_config().model.bridge_features
    assert "not probed" in rows["model.bridge_features"]["reason"]


def test_the_table_states_the_schedule_the_budget_lays_out(tmp_path, monkeypatch):
    """The plan's schedule rows against a fake-clock run of the planned config (the loop's
    own schedule): the warm-up is 100 or a tenth of the steps, a validation every fifth of
    them, and a re-fit changes the count, which the table does not state as fixed."""
    from tests.train.test_budget import FakeClock, _simulate
    from unet_jax.train import budget, intervals, schedule

    monkeypatch.setattr(jax, "block_until_ready", lambda x: x)
    printed = []
    config = auto.get_config()
    planned = auto_plan.plan_config(
        config,
        workdir=tmp_path,
        fixed=(),
        sources={"train": make_examples(40, size=(48, 64), seed=1)},
        num_classes=13,
        machine=CPU,
        step_s_of=lambda c: 0.01,
        log=printed.append,
    )
    (table,) = printed
    rows = {r["field"]: r for r in json.loads((tmp_path / "plan.json").read_text())["decisions"]}
    clock = FakeClock()
    run = schedule.create_schedule(
        planned,
        intervals=intervals.Intervals.from_config(planned, num_examples=40),
        budget_s=budget.check_budget(planned.time_budget_minutes),
        meta={},
        start_step=0,
        started_at=clock.now,
        validation_source=make_examples(8, size=(48, 64), seed=2),
        workdir=None,
        log=lambda *_: None,
        clock=clock,
    )
    # Slow steps (a short run) after a long compiling first one; validations far quicker than
    # the budget's estimate, so a re-fit adds steps at the same interval.
    last, _, changes = _simulate(run, clock, step_s=lambda s: 300.0 if s == 1 else 5.0, eval_s=0.1)
    first = changes[0][1]
    assert len(changes) >= 2  # re-fitted
    # Warm-up: what the row says, 100 or a tenth of the steps if fewer (here fewer).
    assert rows["warmup_steps"]["value"] == planned.warmup_steps == 100
    assert "100 or 1/10 of the steps if fewer" in rows["warmup_steps"]["reason"]
    assert run.plan.warmup_steps == first.total_steps // 10 < 100
    # Validations: every fifth of the first plan's steps; the re-fit changed the count.
    assert "every 1/5 of the steps" in rows["eval_every_steps"]["reason"]
    assert intervals.validations_between(0, first.total_steps, first.eval_every) in (5, 6)
    done = intervals.validations_between(0, last, run.plan.eval_every)
    assert done > 6
    assert "5 validations" not in table and "re-fit changes" in table
    assert "budget.json" in table


def test_the_probe_stops_before_a_wider_width_would_exceed_its_share(tmp_path):
    """A fake probe whose compile-and-run times are chosen: the probe may spend
    PROBE_SHARE of the budget, and a wider width takes at least as long as the last."""
    budget_s = 20 * 60.0  # over PROBE_MIN_BUDGET_S: probed
    share_s = auto_plan.PROBE_SHARE * budget_s  # 180 s
    step_s = {256: 0.001, 512: 0.001, 1024: 0.001}  # every width sees enough pixels

    def plan_with(probe_s: float):
        clock = [0.0]
        probed = []

        def probe(candidate):
            probed.append(candidate.model.bridge_features)
            clock[0] += probe_s
            return step_s[candidate.model.bridge_features]

        planned = _plan(
            tmp_path, time_budget_minutes=budget_s / 60, elapsed_s=lambda: clock[0], step_s_of=probe
        )
        return planned, probed

    # 100 s for the first: a second would end at 200 s > 180 s, so it is not probed.
    planned, probed = plan_with(100.0)
    assert share_s < 2 * 100.0
    assert probed == [256]
    assert planned.model.bridge_features == 256
    record = json.loads((tmp_path / "plan.json").read_text())
    assert [p["bridge"] for p in record["probe"]] == [256]
    reasons = {r["field"]: r["reason"] for r in record["decisions"]}
    assert "wider ones unprobed" in reasons["model.features"]
    # 50 s each: 50 + 50 and 100 + 50 fit in 180 s, so all three are probed.
    planned, probed = plan_with(50.0)
    assert share_s >= 3 * 50.0
    assert probed == [256, 512, 1024]
    assert planned.model.bridge_features == 1024


def test_augment_reasons_close_what_they_open():
    for images in (40, 500):  # strong and ordinary augmentation
        for fp in (
            _fp(images=images, groups=images),
            _fp(images=images, groups=images, bands=4, dtype="uint16"),
        ):
            reason = auto_plan.plan_augment(fp, dataset="folder").reason
            assert reason.count("(") == reason.count(")"), reason
            assert ("strong (" in reason) == (images < auto_plan.FEW_IMAGES)
