"""ResNet encoders: torchvision's names and shapes, weight files, parity with PyTorch, training.

Oracles: a hand-written transcription of torchvision's ResNet state dict (names and
shapes, from its source), and, where torch and torchvision are importable (see
docs/ENCODERS.md for the venv), torchvision itself on the same images.
"""

import functools
import importlib.util
import pathlib
import re

import jax
import numpy as np
import pytest

from unet_jax import cli, encoder_weights
from unet_jax.resnet import ARCHITECTURES, ENCODER_MODULE, ResNetEncoder, ResNetUNet

HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
HAS_TORCHVISION = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("torchvision") is not None
)
needs_safetensors = pytest.mark.skipif(not HAS_SAFETENSORS, reason="pip install '.[safetensors]'")
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="torch + torchvision not installed (docs/ENCODERS.md)"
)
ENCODER_NAMES = list(ARCHITECTURES)


def torchvision_shapes(encoder: str) -> dict[str, tuple]:
    """torchvision.models.resnetXX().state_dict()'s names and shapes, written from its source.

    (resnet.py there: conv1/bn1, layer1..4 of BasicBlock [2,2,2,2] / [3,4,6,3] or
    Bottleneck [3,4,6,3] with expansion 4, downsample = conv1x1 + BatchNorm on the first
    block of a stage whose stride or width changes, fc 1000.)
    """
    bottleneck = encoder == "resnet50"
    layers = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
    shapes: dict[str, tuple] = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers[encoder], strict=True)):
        for j in range(blocks):
            pre = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                out = planes * 4
                convs = [(planes, inplanes, 1), (planes, planes, 3), (out, planes, 1)]
            else:
                out = planes
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for k, (o, c, s) in enumerate(convs, start=1):
                shapes[f"{pre}.conv{k}.weight"] = (o, c, s, s)
                bn(f"{pre}.bn{k}", o)
            if stride != 1 or inplanes != out:
                shapes[f"{pre}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{pre}.downsample.1", out)
            inplanes = out
    shapes["fc.weight"] = (1000, inplanes)
    shapes["fc.bias"] = (1000,)
    return shapes


@functools.cache
def abstract_variables(encoder: str):
    """The whole model's variables as shape structs (no compilation)."""
    model = ResNetUNet(num_classes=3, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.uint8), train=False)
    )


def encoder_variables(encoder: str):
    v = abstract_variables(encoder)
    return {"params": v["params"][ENCODER_MODULE], "batch_stats": v["batch_stats"][ENCODER_MODULE]}


def random_state_dict(encoder: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors of torchvision's shapes (BatchNorm statistics far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in torchvision_shapes(encoder).items():
        if name.endswith("num_batches_tracked"):
            out[name] = np.array(7, np.int64)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    return out


def save_safetensors(tensors, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def load(encoder, path):
    v = abstract_variables(encoder)
    return encoder_weights.load_into(
        dict(v["params"]), dict(v["batch_stats"]), path, encoder=encoder
    )


# --- names and shapes (everywhere) -------------------------------------------------------


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_encoder_tensors_are_torchvisions(encoder):
    expected = encoder_weights.expected_tensors(encoder_variables(encoder))
    oracle = {
        k: v
        for k, v in torchvision_shapes(encoder).items()
        if not encoder_weights.IGNORED.search(k)
    }
    assert {k: shape for k, (_, _, shape) in expected.items()} == oracle


def test_architecture_is_recognised_from_names():
    for encoder in ENCODER_NAMES:
        assert encoder_weights.architecture_of(list(torchvision_shapes(encoder))) == encoder
    assert encoder_weights.architecture_of(["conv1.weight", "head.weight"]) is None


# --- weight files (safetensors) ---------------------------------------------------------


@needs_safetensors
def test_safetensors_file_lands_on_the_right_leaves(tmp_path):
    tensors = random_state_dict("resnet18")
    path = save_safetensors(tensors, tmp_path / "model.safetensors")
    params, stats = load("resnet18", path)
    enc, enc_stats = params[ENCODER_MODULE], stats[ENCODER_MODULE]
    # Kernels: PyTorch [O, I, kh, kw] at Flax [kh, kw, I, O].
    np.testing.assert_array_equal(
        enc["layer2_0"]["conv1"]["kernel"][1, 2, 5, 7], tensors["layer2.0.conv1.weight"][7, 5, 1, 2]
    )
    np.testing.assert_array_equal(
        enc["layer3_0"]["downsample_0"]["kernel"][0, 0],
        tensors["layer3.0.downsample.0.weight"][:, :, 0, 0].T,
    )
    np.testing.assert_array_equal(enc["bn1"]["scale"], tensors["bn1.weight"])
    np.testing.assert_array_equal(enc["layer4_1"]["bn2"]["bias"], tensors["layer4.1.bn2.bias"])
    np.testing.assert_array_equal(
        enc_stats["layer1_1"]["bn1"]["var"], tensors["layer1.1.bn1.running_var"]
    )
    np.testing.assert_array_equal(
        enc_stats["layer3_0"]["downsample_1"]["mean"], tensors["layer3.0.downsample.1.running_mean"]
    )
    # The decoder and head are untouched (here: still shape structs).
    assert (
        params["Conv_0"]["kernel"] is abstract_variables("resnet18")["params"]["Conv_0"]["kernel"]
    )


def _error(encoder, tensors, tmp_path, name="model.safetensors"):
    path = save_safetensors(tensors, tmp_path / name)
    with pytest.raises(encoder_weights.EncoderWeightsError) as info:
        load(encoder, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert cli.exit_code(info.value) == cli.EXIT_BAD_INPUT
    return message


@needs_safetensors
def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    tensors = random_state_dict("resnet18")
    missing = {k: v for k, v in tensors.items() if k != "layer3.1.bn2.running_var"}
    assert "tensor layer3.1.bn2.running_var is missing" in _error("resnet18", missing, tmp_path)
    extra = {**tensors, "layer1.0.se.weight": np.zeros((4,), np.float32)}
    assert "tensor layer1.0.se.weight is not part of a resnet18" in _error(
        "resnet18", extra, tmp_path
    )
    bad = {**tensors, "layer2.1.conv2.weight": np.zeros((128, 128, 1, 3), np.float32)}
    message = _error("resnet18", bad, tmp_path)
    assert "tensor layer2.1.conv2.weight has shape (128, 128, 1, 3)" in message
    assert "needs (128, 128, 3, 3)" in message
    ints = {**tensors, "bn1.weight": np.zeros((64,), np.int32)}
    assert "tensor bn1.weight holds int32" in _error("resnet18", ints, tmp_path)


@needs_safetensors
def test_file_of_another_architecture_is_named(tmp_path):
    message = _error("resnet18", random_state_dict("resnet50"), tmp_path)
    assert "the file holds a resnet50" in message and "resnet18-f37072fd.pth" in message
    message = _error("resnet34", random_state_dict("resnet18"), tmp_path)
    assert re.search(r"tensor layer1\.2\.\S+ is missing", message)
    assert "the file holds a resnet18" in message


@needs_safetensors
def test_truncated_file_is_refused(tmp_path):
    path = save_safetensors(random_state_dict("resnet18"), tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(encoder_weights.EncoderWeightsError, match="truncated or damaged") as info:
        load("resnet18", path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_missing_file_says_where_to_get_it(tmp_path, encoder):
    path = tmp_path / "weights" / "model.safetensors"
    with pytest.raises(encoder_weights.EncoderWeightsError) as info:
        load(encoder, path)
    message = str(info.value)
    assert f"{path} does not exist" in message and "put it there" in message
    assert encoder_weights.TORCHVISION_FILES[encoder] in message
    assert f"https://huggingface.co/timm/{encoder}.a1_in1k" in message


def test_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "resnet18.npz"
    path.write_bytes(b"")
    with pytest.raises(encoder_weights.EncoderWeightsError, match=r"\.pth/\.pt or a timm"):
        load("resnet18", path)


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    path = tmp_path / "resnet18-f37072fd.pth"
    path.write_bytes(b"PK")
    with pytest.raises(encoder_weights.EncoderWeightsError, match="needs PyTorch"):
        load("resnet18", path)


# --- parity with torchvision (torch venv only) -------------------------------------------


def _torch_model(encoder, seed):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, encoder)(weights=None)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
    return model.eval()


def _torch_features(model, images_nchw):
    import torch

    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(torch.from_numpy(images_nchw))))
        out = [x]
        x = model.maxpool(x)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
            out.append(x)
    return [o.numpy().transpose(0, 2, 3, 1) for o in out]


def _flax_features(encoder, params, stats, images_nhwc):
    variables = {"params": params[ENCODER_MODULE], "batch_stats": stats[ENCODER_MODULE]}
    apply = jax.jit(lambda v, x: ResNetEncoder(encoder).apply(v, x, train=False))
    return [np.asarray(f) for f in apply(variables, images_nhwc)]


def _max_relative_error(actual, expected):
    return max(
        float(np.abs(a - e).max()) / max(1.0, float(np.abs(e).max()))
        for a, e in zip(actual, expected, strict=True)
    )


@needs_torchvision
@needs_safetensors
@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_features_equal_torchvision_from_pth_and_safetensors(tmp_path, encoder):
    import torch

    torch.set_num_threads(1)
    model = _torch_model(encoder, seed=len(encoder))
    state = model.state_dict()
    # The hand-written oracle above is torchvision's own state dict.
    assert {k: tuple(v.shape) for k, v in state.items()} == torchvision_shapes(encoder)
    pth = tmp_path / f"{encoder}.pth"
    torch.save(state, pth)
    st = save_safetensors({k: v.numpy() for k, v in state.items()}, tmp_path / "model.safetensors")

    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 1.0, (2, 64, 96, 3)).astype(np.float32)
    expected = _torch_features(model, images.transpose(0, 3, 1, 2).copy())
    assert [f.shape[1:3] for f in expected] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    for path in (pth, st):
        params, stats = load(encoder, path)
        actual = _flax_features(encoder, params, stats, images)
        assert [a.shape for a in actual] == [e.shape for e in expected]
        assert _max_relative_error(actual, expected) < 2e-5, path.name

    # A wrong mapping shows: two tensors of one shape swapped in the file.
    swapped = {k: v.numpy() for k, v in state.items()}
    a, b = "layer1.0.conv2.weight", "layer1.1.conv2.weight"
    swapped[a], swapped[b] = swapped[b], swapped[a]
    params, stats = load(encoder, save_safetensors(swapped, tmp_path / "swapped.safetensors"))
    assert _max_relative_error(_flax_features(encoder, params, stats, images), expected) > 1e-2


@needs_torchvision
def test_pth_training_checkpoint_and_truncated_pth(tmp_path):
    import torch

    state = _torch_model("resnet18", seed=1).state_dict()
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3}, wrapped)
    params, _ = load("resnet18", wrapped)
    np.testing.assert_array_equal(
        params[ENCODER_MODULE]["conv1"]["kernel"],
        state["conv1.weight"].numpy().transpose(2, 3, 1, 0),
    )
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(encoder_weights.EncoderWeightsError, match="truncated or damaged"):
        load("resnet18", path)


def test_docs_name_the_parity_command():
    text = (pathlib.Path(__file__).parents[1] / "docs" / "ENCODERS.md").read_text()
    assert "tests/test_encoders.py" in text and "torchvision==0.29.1" in text


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
    from unet_jax.config_checks import ConfigError, validate_config

    config = encoder_config(image_size=(48, 64))
    with pytest.raises(ConfigError, match="must be multiples of 32 .the resnet18 encoder"):
        validate_config(config, process_count=1, local_device_count=4)
    model = ResNetUNet(encoder="resnet34")
    with pytest.raises(ValueError, match="positive multiples of 32"):
        model.check_input_shape((1, 48, 64, 3))


def test_fine_tuning_fields_are_checked():
    from unet_jax.config_checks import ConfigError, validate_config

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
    from unet_jax import parallel
    from unet_jax.train import make_loss_fn
    from unet_jax.train_state import create_model, create_train_state

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


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_every_encoder_trains_frozen_then_thawed(encoder, sources):
    config = encoder_config(
        encoder, learning_rate=3e-3, encoder_lr_multiplier=0.5, encoder_frozen_steps=2
    )
    batch = {
        "image": np.stack([e["image"] for e in sources["train"][:4]]),
        "label": np.stack([e["label"][..., 0] for e in sources["train"][:4]]),
    }
    start, states, losses = _train_steps(config, batch, 6)
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses
    frozen, thawed = states[1], states[-1]  # after steps 2 and 6
    for collection in ("params", "batch_stats"):
        first, during, after = (getattr(s, collection) for s in (start, frozen, thawed))
        assert _leaves_equal(during[ENCODER_MODULE], first[ENCODER_MODULE]), collection
        assert not _leaves_equal(after[ENCODER_MODULE], first[ENCODER_MODULE]), collection
        assert not _leaves_equal(during["ConvBlock_0"], first["ConvBlock_0"]), collection


def test_learning_rate_multiple_scales_the_first_encoder_step():
    # SGD's first step is -lr * grad: the encoder's is exactly multiplier times the decoder's rule.
    import optax

    from unet_jax import fine_tuning

    params = {
        ENCODER_MODULE: {"w": np.ones(3, np.float32)},
        "Conv_0": {"w": np.ones(2, np.float32)},
    }
    grads = {
        ENCODER_MODULE: {"w": np.full(3, 2.0, np.float32)},
        "Conv_0": {"w": np.full(2, 2.0, np.float32)},
    }
    tx = fine_tuning.encoder_optimizer(
        optimizer="sgd", schedule=optax.constant_schedule(0.1), lr_multiplier=0.25, frozen_steps=1
    )
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[ENCODER_MODULE]["w"], 0.0)  # frozen step
    np.testing.assert_allclose(updates["Conv_0"]["w"], -0.2)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates[ENCODER_MODULE]["w"], -0.05)  # momentum starts fresh
    np.testing.assert_allclose(updates["Conv_0"]["w"], -0.2 * 1.9)


def test_resume_is_bit_identical_with_weights_frozen_steps_and_lr_multiple(tmp_path, sources):
    import json

    from unet_jax import train as train_lib
    from unet_jax.checkpointing import Checkpointer
    from unet_jax.train_state import create_train_state

    # Both runs start from a weights file where safetensors is installed (else from scratch).
    tensors = random_state_dict("resnet18", seed=3)
    weights = None
    if HAS_SAFETENSORS:
        weights = str(save_safetensors(tensors, tmp_path / "model.safetensors"))

    def config(steps):
        return encoder_config(
            num_train_steps=steps,
            encoder_frozen_steps=3,
            encoder_lr_multiplier=0.1,
            encoder_weights=weights,
            checkpoint_every_steps=2,
            eval_every_steps=4,
        )

    def restored(workdir, step=None):
        template = create_train_state(config(4), rng=jax.random.key(0), total_steps=1)
        checkpointer = Checkpointer(workdir, keep=3)
        state, meta = checkpointer.restore(template, step=step)
        checkpointer.close()
        return state, meta

    train_lib.train_and_evaluate(config(4), tmp_path / "a", sources=sources)
    train_lib.train_and_evaluate(config(2), tmp_path / "b", sources=sources)
    if weights:
        pathlib.Path(weights).unlink()  # a resumed run uses its checkpoint, not the file
    resumed = train_lib.train_and_evaluate(config(4), tmp_path / "b", sources=sources)
    assert resumed["step"] == 4
    (a, _), (b, meta) = restored(tmp_path / "a"), restored(tmp_path / "b")
    for name in ("params", "batch_stats", "opt_state"):
        assert _leaves_equal(getattr(a, name), getattr(b, name)), name
    if not weights:
        return
    # Frozen at step 2: the encoder is still exactly the file's.
    frozen, _ = restored(tmp_path / "b", step=2)
    kernel = frozen.params[ENCODER_MODULE]["layer1_0"]["conv1"]["kernel"]
    np.testing.assert_array_equal(kernel, tensors["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        frozen.batch_stats[ENCODER_MODULE]["bn1"]["mean"], tensors["bn1.running_mean"]
    )
    assert not np.array_equal(
        b.params[ENCODER_MODULE]["layer1_0"]["conv1"]["kernel"], np.asarray(kernel)
    )
    assert meta["encoder_weights"]["file"] == str(pathlib.Path(weights).resolve())
    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    oracle = [k for k in torchvision_shapes("resnet18") if not encoder_weights.IGNORED.search(k)]
    assert info["encoder_weights"]["tensors"] == len(oracle)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_jax_export_equals_the_model(encoder):
    from unet_jax import export

    model = ResNetUNet(num_classes=5, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    variables = jax.jit(lambda k: model.init(k, images[:1, :32, :32], train=False))(
        jax.random.key(1)
    )
    exported = export.export_model(model, variables, platforms=("cpu",))
    expected = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    np.testing.assert_allclose(np.asarray(exported.call(images)), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        exported.call(images[:, :48])


def test_bfloat16_computes_close_to_float32_with_float32_variables():
    model = ResNetUNet(num_classes=4, encoder="resnet18", decoder_features=(8, 8, 8, 8, 8))
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(0))
    bf16 = model.clone(dtype=jax.numpy.bfloat16)
    assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(variables))
    f32_logits = np.asarray(jax.jit(lambda v: model.apply(v, images, train=False))(variables))
    bf16_logits = jax.jit(lambda v: bf16.apply(v, images, train=False))(variables)
    assert bf16_logits.dtype == np.float32
    scale = np.abs(f32_logits).max()
    assert np.abs(np.asarray(bf16_logits) - f32_logits).max() < 0.1 * scale


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_onnx_export_equals_the_model(encoder):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tests.test_onnx import assert_logits_match, model_config, perturbed_variables, session
    from unet_jax import inference, onnx_export
    from unet_jax.train_state import create_model

    config = model_config(num_classes=6, encoder=encoder, decoder_features=(16, 8, 8, 8, 8))
    model = create_model(config)
    variables = perturbed_variables(model, (1, 32, 32, 3), seed=len(encoder))
    proto = onnx_export.build_model(model, variables)
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    ort_session = session(proto)
    apply_fn = inference.make_apply_fn(model)
    rng = np.random.default_rng(0)
    for b, h, w in [(2, 64, 96), (1, 32, 32)]:
        images = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
        expected = np.asarray(apply_fn(variables, images))
        assert_logits_match(ort_session.run(None, {"images": images})[0], expected)
