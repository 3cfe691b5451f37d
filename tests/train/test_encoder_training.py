"""ResNet-encoder U-Nets train: frozen then thawed, an lr multiple, bit-identical resume.

Cheap on purpose: resnet18 at 32x32 with a narrow decoder; one set of runs (mesh driver,
with a weights file where safetensors is installed) serves the resume, frozen-phase,
eval, predict and init_from checks. The deeper encoders differ only in depth (resnet34)
or block (resnet50, checked in tests/model/test_resnet.py and tests/deploy).
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from tests.encoder_helpers import (
    HAS_SAFETENSORS,
    needs_safetensors,
    random_state_dict,
    save_safetensors,
    torchvision_shapes,
)
from unet_jax.model import encoder_weights
from unet_jax.model.resnet import ENCODER_MODULE, ResNetUNet

# --- training, fine-tuning controls, resume, export (everywhere) -------------------------


def encoder_config(encoder="resnet18", **overrides):
    """The tiny config with a ResNet encoder and a narrow decoder at 32x32 (cheap)."""
    from unet_jax.configs import tiny

    config = tiny.get_config()
    config.model.encoder = encoder
    config.model.decoder_features = (16, 8, 8, 8, 8)
    config.model.dropout_rate = 0.0
    config.schedule = "constant"
    config.warmup_steps = 0
    config.worker_count = 0
    config.batch_size = 4
    config.eval_batch_size = 4
    config.log_every_steps = 1
    for key, value in overrides.items():
        target = config.model if key in config.model else config
        target[key] = value
    return config


@pytest.fixture(scope="module")
def sources():
    from tests.fake_data import make_examples

    return {"train": make_examples(16, seed=1), "validation": make_examples(4, seed=2)}


def test_sizes_must_be_multiples_of_32():
    from unet_jax.train.config_checks import ConfigError, validate_config

    config = encoder_config(image_size=(48, 64))
    with pytest.raises(ConfigError, match="must be multiples of 32 .the resnet18 encoder"):
        validate_config(config, process_count=1, local_device_count=4)
    model = ResNetUNet(encoder="resnet34")
    with pytest.raises(ValueError, match="positive multiples of 32"):
        model.check_input_shape((1, 48, 64, 3))


def test_fine_tuning_fields_are_checked():
    from unet_jax.train.config_checks import ConfigError, validate_config

    cases = {
        "decoder_features": ((8, 8, 8, 8), "5 positive integer widths"),
        "encoder_lr_multiplier": (-1.0, "must be >= 0"),
        "encoder_frozen_steps": (-2, "an integer >= 0"),
    }
    for field, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            validate_config(encoder_config(**{field: value}), process_count=1, local_device_count=4)
    unet = encoder_config(encoder="unet", encoder_weights="w.pth", image_size=(32, 32))
    with pytest.raises(ConfigError, match="needs a ResNet encoder"):
        validate_config(unet, process_count=1, local_device_count=4)
    both = encoder_config(encoder_weights="w.pth", init_from="runs/a")
    with pytest.raises(ConfigError, match="give one of them"):
        validate_config(both, process_count=1, local_device_count=4)


def _train_steps(config, batch, steps):
    from unet_jax.model.factory import create_model
    from unet_jax.train import parallel
    from unet_jax.train.init_state import create_train_state
    from unet_jax.train.loop import make_loss_fn

    state = create_train_state(config, rng=jax.random.key(0), total_steps=100)
    model = create_model(config, bn_axis_name=parallel.AXIS)
    driver = parallel.make_driver(
        "pmap",
        model_apply=model.apply,
        loss_fn=make_loss_fn(config),
        num_classes=config.num_classes,
        devices=jax.devices()[:1],
    )
    device_state = driver.put_state(state)
    device_batch = driver.put_batch({k: v[None] for k, v in batch.items()})
    states, losses = [], []
    for _ in range(steps):
        device_state, m = driver.train_step(device_state, device_batch)
        losses.append(float(driver.get_metrics(m)["loss"]))
        states.append(driver.get_state(device_state))
    return state, states, losses


def _leaves_equal(a, b):
    return all(
        np.array_equal(x, y)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def test_pmap_training_loss_falls_with_the_encoder_frozen_then_thawed(sources):
    config = encoder_config(learning_rate=3e-3, encoder_lr_multiplier=0.5, encoder_frozen_steps=2)
    batch = {
        "image": np.stack([e["image"] for e in sources["train"][:4]]),
        "label": np.stack([e["label"][..., 0] for e in sources["train"][:4]]),
    }
    start, states, losses = _train_steps(config, batch, 5)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses
    frozen, thawed = states[1], states[-1]  # after steps 2 and 5
    for collection in ("params", "batch_stats"):
        first, during, after = (getattr(s, collection) for s in (start, frozen, thawed))
        assert _leaves_equal(during[ENCODER_MODULE], first[ENCODER_MODULE]), collection
        assert not _leaves_equal(after[ENCODER_MODULE], first[ENCODER_MODULE]), collection
        assert not _leaves_equal(during["ConvBlock_0"], first["ConvBlock_0"]), collection


def test_learning_rate_multiple_scales_the_first_encoder_step():
    # SGD's first step is -lr * grad: the encoder's is exactly multiplier times the decoder's rule.
    import optax

    from unet_jax.train.optimizer import encoder_optimizer

    params = {
        ENCODER_MODULE: {"w": np.ones(3, np.float32)},
        "Conv_0": {"w": np.ones(2, np.float32)},
    }
    grads = {
        ENCODER_MODULE: {"w": np.full(3, 2.0, np.float32)},
        "Conv_0": {"w": np.full(2, 2.0, np.float32)},
    }

    def scale(multiplier):
        return optax.scale_by_learning_rate(optax.constant_schedule(multiplier * 0.1))

    tx = encoder_optimizer(optimizer="sgd", scale=scale, lr_multiplier=0.25, frozen_steps=1)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[ENCODER_MODULE]["w"], 0.0)  # frozen step
    np.testing.assert_allclose(updates["Conv_0"]["w"], -0.2)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[ENCODER_MODULE]["w"], -0.05)  # momentum starts fresh
    np.testing.assert_allclose(updates["Conv_0"]["w"], -0.2 * 1.9)


def run_config(steps, weights):
    """The runs' config: mesh driver, encoder frozen for 3 steps at a tenth of the lr."""
    return encoder_config(
        driver="mesh",
        num_train_steps=steps,
        encoder_frozen_steps=3,
        encoder_lr_multiplier=0.1,
        encoder_weights=weights,
        checkpoint_every_steps=2,
        eval_every_steps=4,
    )


def restored(workdir, weights, step=None):
    from unet_jax.run.checkpointing import Checkpointer
    from unet_jax.train.init_state import create_train_state

    template = create_train_state(run_config(4, weights), rng=jax.random.key(0), total_steps=1)
    checkpointer = Checkpointer(workdir, keep=3)
    state, meta = checkpointer.restore(template, step=step)
    checkpointer.close()
    return state, meta


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sources):
    """Run a: 4 steps; run b: 2 steps, then resumed to 4 (the weights file gone by then)."""
    from unet_jax.train import loop as train_lib

    root = tmp_path_factory.mktemp("resnet_runs")
    tensors = random_state_dict("resnet18", seed=3)
    weights = None
    if HAS_SAFETENSORS:  # both runs start from a weights file (else from scratch)
        weights = str(save_safetensors(tensors, root / "model.safetensors"))
    train_lib.train_and_evaluate(run_config(4, weights), root / "a", sources=sources)
    train_lib.train_and_evaluate(run_config(2, weights), root / "b", sources=sources)
    if weights:
        pathlib.Path(weights).unlink()  # a resumed run uses its checkpoint, not the file
    resumed = train_lib.train_and_evaluate(run_config(4, weights), root / "b", sources=sources)
    return dict(root=root, weights=weights, tensors=tensors, resumed=resumed)


@pytest.mark.slow
def test_resume_is_bit_identical_with_weights_frozen_steps_and_lr_multiple(runs):
    assert runs["resumed"]["step"] == 4
    weights = runs["weights"]
    (a, _), (b, meta) = (restored(runs["root"] / n, weights) for n in ("a", "b"))
    for name in ("params", "batch_stats", "opt_state"):
        assert _leaves_equal(getattr(a, name), getattr(b, name)), name
    if weights:
        assert meta["encoder_weights"]["file"] == str(pathlib.Path(weights).resolve())
        info = json.loads((runs["root"] / "a" / "run_info.json").read_text())
        oracle = [
            k for k in torchvision_shapes("resnet18") if not encoder_weights.IGNORED.search(k)
        ]
        assert info["encoder_weights"]["tensors"] == len(oracle)


@pytest.mark.slow
@needs_safetensors
def test_encoder_is_the_files_while_frozen_and_trains_after(runs):
    tensors, weights = runs["tensors"], runs["weights"]
    frozen, _ = restored(runs["root"] / "b", weights, step=2)
    kernel = frozen.params[ENCODER_MODULE]["layer1_0"]["conv1"]["kernel"]
    np.testing.assert_array_equal(kernel, tensors["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        frozen.batch_stats[ENCODER_MODULE]["bn1"]["mean"], tensors["bn1.running_mean"]
    )
    thawed, _ = restored(runs["root"] / "b", weights)
    assert not np.array_equal(
        thawed.params[ENCODER_MODULE]["layer1_0"]["conv1"]["kernel"], np.asarray(kernel)
    )


@pytest.mark.slow
def test_eval_predict_and_init_from_use_a_resnet_run(runs, sources, tmp_path):
    from PIL import Image

    from unet_jax.deploy import predict
    from unet_jax.deploy.options import SegmenterOptions
    from unet_jax.evaluation import evaluate
    from unet_jax.run.classes_file import read_run_classes
    from unet_jax.run.loading import load_run, make_apply_fn
    from unet_jax.run.metric_writers import read_metrics
    from unet_jax.train import init_from
    from unet_jax.train.init_state import create_train_state

    workdir = runs["root"] / "a"
    report = evaluate.run_evaluation(
        workdir,
        evaluate.EvalOptions(
            progress=False, split="validation", checkpoint="latest", pictures=False
        ),
        sources=sources,
        out_dir=tmp_path / "eval",
    )
    logged = [r for r in read_metrics(workdir) if r["split"] == "validation"][-1]
    assert report["checkpoint"]["step"] == logged["step"] == 4
    assert report["mean_iou"] == pytest.approx(logged["mean_iou"], abs=1e-9)

    image = sources["validation"][0]["image"]
    Image.fromarray(image).save(tmp_path / "x.png")
    predict.predict_files(
        workdir, [tmp_path / "x.png"], tmp_path / "out", segment=SegmenterOptions(), progress=False
    )
    run = load_run(workdir)
    assert run.config.model.encoder == "resnet18"
    ids = np.asarray(make_apply_fn(run.model)(run.variables, image[None])).argmax(-1)[0]
    label = np.asarray(Image.open(tmp_path / "out" / "labels" / "x.png"))  # ids, one channel
    np.testing.assert_array_equal(label, ids)

    fresh = create_train_state(run_config(4, None), rng=jax.random.key(5), total_steps=1)
    classes = read_run_classes(workdir)
    state, _ = init_from.initialise(fresh, str(workdir), classes=classes, log=lambda _: None)
    assert _leaves_equal(state.params, run.variables["params"])
    # Into a classic U-Net: refused, naming the source's encoder.
    unet = create_train_state(encoder_config(encoder="unet"), rng=jax.random.key(5), total_steps=1)
    with pytest.raises(init_from.InitFromError, match="model.encoder='resnet18'"):
        init_from.initialise(unet, str(workdir), classes=classes, log=lambda _: None)
