"""Fine-tuning from another run (``--config.init_from``).

Oracles: the source run's own checkpoint (read back with `run_loading.load_run`) and the
fresh initialisation of the new run's model (what a re-initialised head must equal), and
the state the training loop hands to the devices before its first step (a spy on the
driver's ``put_state``).
"""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax import cli
from unet_jax.configs import tiny
from unet_jax.data.classes import ClassSet
from unet_jax.run import loading as run_loading
from unet_jax.train import init_from, parallel
from unet_jax.train import loop as train_lib
from unet_jax.train.init_state import create_train_state

THIRTEEN = ClassSet.from_names([f"class{i}" for i in range(13)])
SIX = ClassSet.from_names(["Building", "Land", "Road", "Vegetation", "Water", "Unlabeled"])


def _config(**overrides):
    config = tiny.get_config()
    config.schedule = "constant"
    config.warmup_steps = 0
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 2
    config.checkpoint_every_steps = 2
    config.eval_every_steps = 2
    config.log_every_steps = 1
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def sources():
    return {"train": make_examples(16, seed=1), "validation": make_examples(8, seed=2)}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, sources):
    """A 13-class tiny run of 2 steps (best and latest checkpoints at step 2)."""
    workdir = tmp_path_factory.mktemp("source")
    train_lib.train_and_evaluate(_config(), workdir, sources=sources, classes=THIRTEEN)
    return workdir


@pytest.fixture
def started(monkeypatch):
    """The (step, params, batch_stats) each training run starts its loop from."""
    states = []
    make_driver = parallel.make_driver

    def spying_make_driver(*args, **kwargs):
        driver = make_driver(*args, **kwargs)

        def put_state(state):
            states.append((int(state.step), _flat(state.params), _flat(state.batch_stats)))
            return driver.put_state(state)

        return dataclasses.replace(driver, put_state=put_state)

    monkeypatch.setattr(train_lib.parallel, "make_driver", spying_make_driver)
    return states


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def _checkpoint(workdir, checkpoint="best"):
    run = run_loading.load_run(workdir, checkpoint=checkpoint)
    return _flat(run.variables["params"]), _flat(run.variables["batch_stats"])


def _assert_same(a: dict, b: dict, *, skip=()):
    assert a.keys() == b.keys()
    for key in a:
        if key not in skip:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("suffix", ["", ":best", ":latest", ":2"])
def test_same_class_count_starts_from_the_source_exactly(source_run, suffix):
    config = _config()
    fresh = create_train_state(config, rng=jax.random.key(7), total_steps=10)
    logged = []
    state, info = init_from.initialise(
        fresh, f"{source_run}{suffix}", classes=THIRTEEN, log=logged.append
    )
    params, stats = _checkpoint(source_run)
    _assert_same(_flat(state.params), params)
    _assert_same(_flat(state.batch_stats), stats)
    # A fresh optimizer from step 0: Adam's moments are still zero.
    assert int(state.step) == 0
    assert all(not np.asarray(x).any() for x in jax.tree_util.tree_leaves(state.opt_state))
    assert info == {
        "workdir": str(source_run.resolve()),
        "checkpoint": {"": "best", ":best": "best", ":latest": "latest", ":2": 2}[suffix],
        "step": 2,
        "reinitialized": [],
    }
    assert f"Initialised from {source_run}" in logged[0]


def test_other_class_count_reinitialises_only_the_head(source_run):
    config = _config(num_classes=6)
    fresh = create_train_state(config, rng=jax.random.key(7), total_steps=10)
    logged = []
    state, info = init_from.initialise(fresh, str(source_run), classes=SIX, log=logged.append)
    head = ("['Conv_0']['bias']", "['Conv_0']['kernel']")
    params, stats = _checkpoint(source_run)
    ours = _flat(state.params)
    _assert_same(ours, params, skip=head)  # everything but the head is the source's
    _assert_same(_flat(state.batch_stats), stats)
    _assert_same({k: ours[k] for k in head}, {k: _flat(fresh.params)[k] for k in head})
    assert ours[head[1]].shape == (1, 1, 4, 6) and params[head[1]].shape == (1, 1, 4, 13)
    assert info["reinitialized"] == ["params/Conv_0/bias", "params/Conv_0/kernel"]
    assert "params/Conv_0/bias, params/Conv_0/kernel" in logged[1]


def test_other_widths_fail_before_training_naming_the_parameter(tmp_path, source_run, sources):
    config = _config(init_from=str(source_run))
    config.model.features = (8, 16)
    with pytest.raises(init_from.InitFromError) as info:
        train_lib.train_and_evaluate(config, tmp_path, sources=sources, classes=THIRTEEN)
    message = str(info.value)
    assert (
        "params/EncoderBlock_0/ConvBlock_0/Conv_0/kernel has shape (3, 3, 3, 8) here but "
        "(3, 3, 3, 4) in the source run"
    ) in message
    assert str(source_run) in message
    assert "the source run has model.features=(4, 8)" in message
    assert cli.exit_code(info.value) == 2
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    assert not (tmp_path / "metrics.jsonl").exists()


def test_training_starts_from_the_source_and_records_it(tmp_path, source_run, sources, started):
    config = _config(init_from=f"{source_run}:latest")
    train_lib.train_and_evaluate(config, tmp_path, sources=sources, classes=THIRTEEN)
    [(step, params, stats)] = started
    assert step == 0
    source_params, source_stats = _checkpoint(source_run, "latest")
    _assert_same(params, source_params)
    _assert_same(stats, source_stats)
    info = json.loads((tmp_path / "run_info.json").read_text())["init_from"]
    assert info["workdir"] == str(source_run.resolve()) and info["step"] == 2


def test_resuming_a_fine_tuned_run_ignores_init_from(tmp_path, source_run, sources, started):
    source = tmp_path / "source"
    shutil.copytree(source_run, source)
    run = tmp_path / "run"
    config = _config(init_from=str(source), learning_rate=1e-2)
    train_lib.train_and_evaluate(config, run, sources=sources, classes=THIRTEEN)
    tuned, tuned_stats = _checkpoint(run, "latest")
    assert any(not np.array_equal(tuned[k], v) for k, v in _checkpoint(source)[0].items())
    shutil.rmtree(source)  # a resume that read init_from again would fail
    config.num_train_steps = 4
    result = train_lib.train_and_evaluate(config, run, sources=sources, classes=THIRTEEN)
    assert result["step"] == 4
    step, params, stats = started[-1]  # what the resumed loop started from
    assert step == 2
    _assert_same(params, tuned)
    _assert_same(stats, tuned_stats)
    info = json.loads((run / "run_info.json").read_text())["init_from"]
    assert info["workdir"] == str(source.resolve())  # still names its source


@pytest.mark.parametrize(
    ("spec", "workdir", "checkpoint"),
    [
        ("runs/a", "runs/a", "best"),
        ("runs/a:latest", "runs/a", "latest"),
        ("runs/a:BEST", "runs/a", "best"),
        ("runs/a:1200", "runs/a", 1200),
        ("runs/x:y", "runs/x:y", "best"),  # not a checkpoint choice: part of the path
    ],
)
def test_parse_spec(spec, workdir, checkpoint):
    parsed = init_from.parse_spec(spec)
    assert (str(parsed.workdir), parsed.checkpoint) == (workdir, checkpoint)


@pytest.mark.parametrize("spec", ["", "  ", ":best"])
def test_parse_spec_refuses_an_empty_workdir(spec):
    with pytest.raises(init_from.InitFromError):
        init_from.parse_spec(spec)
