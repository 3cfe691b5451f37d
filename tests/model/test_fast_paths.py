"""Fast paths compute what the reference paths compute.

- ``conv_impl="patches"``: the per-tap matmul weight gradient equals XLA's convolution
  gradient (function level, every padding; and on a whole U-Net, where its size rule
  routes some layers to it).
- bfloat16 mixed precision: a bf16 training run tracks the float32 run over 20 steps,
  with float32 parameters, optimizer state and BatchNorm statistics throughout.
- benchmarks/torch_unet.py (only when PyTorch is installed): the PyTorch U-Net, given the
  Flax model's variables, computes the same logits, has the same parameter count, and its
  soft Dice equals ``unet_jax.train.losses.soft_dice_loss``.
"""

import importlib.util
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from tests.conftest import REPO_ROOT
from tests.model.param_count import expected_param_count
from unet_jax.configs import tiny
from unet_jax.model.conv_fast import (
    PATCHES_MIN_CHANNELS,
    PATCHES_MIN_PIXELS,
    patches_conv_general_dilated,
    resolve_conv_impl,
)
from unet_jax.model.factory import create_model
from unet_jax.model.unet import UNet, count_params
from unet_jax.train import losses, parallel
from unet_jax.train.init_state import create_train_state
from unet_jax.train.loop import make_loss_fn

DN = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, w, padding):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN)


def _patches_conv(x, w, padding, **thresholds):
    return patches_conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN, **thresholds)


def _num_dots(fn, *args) -> int:
    """How many dot_general ops the traced function contains (custom_vjp rules included)."""
    return str(jax.make_jaxpr(fn)(*args)).count("dot_general")


def _random_conv_problem(shape, kernel, seed=0, dtype=jnp.float32):
    kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, shape, dtype)
    w = jax.random.normal(kw, kernel, dtype) / np.sqrt(np.prod(kernel[:3]))
    return x, w, kg


@pytest.mark.parametrize(
    "shape, kernel, padding",
    [
        ((2, 9, 7, 3), (3, 3, 3, 5), "SAME"),
        ((1, 8, 8, 4), (3, 3, 4, 4), "VALID"),
        ((3, 6, 10, 2), (3, 3, 2, 6), ((1, 1), (1, 1))),
        ((2, 7, 5, 3), (3, 3, 3, 2), ((2, 0), (0, 1))),
        ((2, 6, 6, 3), (1, 1, 3, 4), "SAME"),
        ((1, 6, 5, 2), (2, 3, 2, 3), "SAME"),
    ],
)
def test_patches_conv_equals_xla_conv_and_its_gradients(shape, kernel, padding):
    x, w, kg = _random_conv_problem(shape, kernel)
    expected, xla_vjp = jax.vjp(lambda x_, w_: _xla_conv(x_, w_, padding), x, w)
    got, patches_vjp = jax.vjp(
        lambda x_, w_: _patches_conv(x_, w_, padding, min_channels=0, min_pixels=0), x, w
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    cotangent = jax.random.normal(kg, expected.shape)
    for g, e in zip(patches_vjp(cotangent), xla_vjp(cotangent), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(e))))
    # The weight gradient really is the per-tap matmuls (one dot per kernel tap).
    taps = kernel[0] * kernel[1]
    assert _num_dots(lambda c: patches_vjp(c)[1], cotangent) == taps


def test_patches_conv_in_bfloat16_keeps_dtypes_and_tracks_float32():
    x, w, kg = _random_conv_problem((2, 8, 8, 4), (3, 3, 4, 6))
    cotangent = jax.random.normal(kg, (2, 8, 8, 6))
    bf = lambda a: a.astype(jnp.bfloat16)  # noqa: E731
    out, vjp = jax.vjp(
        lambda x_, w_: _patches_conv(x_, w_, "SAME", min_channels=0, min_pixels=0), bf(x), bf(w)
    )
    assert out.dtype == jnp.bfloat16
    dx, dw = vjp(bf(cotangent))
    assert dx.dtype == dw.dtype == jnp.bfloat16
    _, xla_vjp = jax.vjp(lambda x_, w_: _xla_conv(x_, w_, "SAME"), x, w)
    ref_dx, ref_dw = xla_vjp(cotangent)
    np.testing.assert_allclose(out.astype(np.float32), _xla_conv(x, w, "SAME"), atol=0.1)
    np.testing.assert_allclose(dx.astype(np.float32), ref_dx, atol=0.1)
    np.testing.assert_allclose(dw.astype(np.float32), ref_dw, atol=0.05 * np.abs(ref_dw).max())


def test_size_rule_routes_only_large_convolutions_to_the_matmul_gradient():
    def weight_grad_dots(shape, c_out):
        x = jnp.zeros(shape)
        w = jnp.zeros((3, 3, shape[-1], c_out))
        return _num_dots(jax.grad(lambda w_: jnp.sum(_patches_conv(x, w_, "SAME"))), w)

    side = int(np.sqrt(PATCHES_MIN_PIXELS))
    c = PATCHES_MIN_CHANNELS
    assert weight_grad_dots((1, side, side, c), c) == 9
    assert weight_grad_dots((1, side, side, c - 1), c) == 0  # too few input channels
    assert weight_grad_dots((1, side, side, c), c - 1) == 0  # too few output channels
    assert weight_grad_dots((1, side - 1, side, c), c) == 0  # too few pixels


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(window_strides=(2, 2)), "window_strides"),
        (dict(rhs_dilation=(2, 2)), "rhs_dilation"),
        (dict(feature_group_count=2), "feature_group_count"),
        (dict(dimension_numbers=("NCHW", "OIHW", "NCHW")), "NHWC"),
    ],
)
def test_patches_conv_rejects_what_it_does_not_support(kwargs, match):
    args = dict(window_strides=(1, 1), padding="SAME", dimension_numbers=DN)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        patches_conv_general_dilated(jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 4, 4)), **args)


def test_unknown_conv_impl_is_a_clear_error():
    model = UNet(num_classes=3, features=(4,), bridge_features=8, conv_impl="cudnn")
    with pytest.raises(ValueError, match="conv_impl.*'cudnn'"):
        model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3), jnp.uint8), train=False)


def test_unet_with_patches_is_the_same_function_with_the_same_gradients():
    # One 64-channel level at 64x64: its three 64+ channel convolutions are large enough
    # for the matmul weight gradient (the 3->64 one and the 32x32 bridge are not).
    kwargs = dict(num_classes=5, features=(64,), bridge_features=64)
    reference, fast = UNet(**kwargs), UNet(**kwargs, conv_impl="patches")
    images = jax.random.randint(jax.random.key(1), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
    variables = reference.init(jax.random.key(0), images, train=False)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
        fast.init(jax.random.key(0), images, train=False)
    )
    assert count_params(variables["params"]) == expected_param_count(
        num_classes=5, features=(64,), bridge_features=64
    )
    labels = jax.random.randint(jax.random.key(2), (2, 64, 64), 0, 5)

    def loss(model, params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean(losses.soft_dice_loss(logits, labels, num_classes=5)), logits

    (ref_loss, ref_logits), ref_grads = jax.value_and_grad(
        lambda p: loss(reference, p), has_aux=True
    )(variables["params"])
    grad_fn = jax.value_and_grad(lambda p: loss(fast, p), has_aux=True)
    (fast_loss, fast_logits), fast_grads = grad_fn(variables["params"])
    np.testing.assert_allclose(fast_logits, ref_logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-6)
    for path, g in jax.tree_util.tree_leaves_with_path(fast_grads):
        e = ref_grads
        for key in path:
            e = e[key.key]
        scale = float(jnp.max(jnp.abs(e))) + 1e-12
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * scale, err_msg=str(path))
    # Guard: the fast model really took the matmul gradient in 3 convolutions x 9 taps.
    extra = _num_dots(lambda p: grad_fn(p)[1], variables["params"]) - _num_dots(
        jax.grad(lambda p: loss(reference, p)[0]), variables["params"]
    )
    assert extra == 3 * 9


# ------------------------------------------------------------ conv_impl="auto"


def _no_locations(mlir_text: str) -> str:
    """StableHLO text without source locations (they name this file's lines)."""
    lines = (re.sub(r"\s*loc\(.*$", "", line) for line in mlir_text.splitlines())
    return "\n".join(line for line in lines if line.strip() and not line.startswith("#loc"))


@pytest.mark.parametrize(
    "backend, expected", [("cpu", "patches"), ("gpu", "xla"), ("cuda", "xla"), ("tpu", "xla")]
)
def test_auto_conv_impl_resolves_per_backend(monkeypatch, backend, expected):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert resolve_conv_impl("auto") == expected
    assert resolve_conv_impl("auto", backend="cpu") == "patches"  # an explicit backend wins
    assert resolve_conv_impl("auto", backend="gpu") == "xla"
    for explicit in ("xla", "patches"):  # still overridable on every backend
        assert resolve_conv_impl(explicit) == explicit
    # The configs' default is "auto", resolved once when the model is built.
    config = tiny.get_config()
    assert config.model.conv_impl == "auto"
    assert create_model(config).conv_impl == expected
    config.model.conv_impl = "xla"
    assert create_model(config).conv_impl == "xla"
    with pytest.raises(ValueError, match="conv_impl.*'cudnn'"):
        resolve_conv_impl("cudnn")


def test_auto_on_cpu_is_patches_with_the_same_parameters_and_forward_as_xla():
    # One 64-channel level at 64x64, so that "patches" really changes three gradients.
    config = tiny.get_config()
    config.image_size = (64, 64)
    config.model.features = (64,)
    config.model.bridge_features = 64
    states, models = {}, {}
    for impl in ("auto", "xla"):
        config.model.conv_impl = impl
        states[impl] = create_train_state(config, rng=jax.random.key(0), total_steps=10)
        models[impl] = create_model(config)
    assert jax.default_backend() == "cpu" and models["auto"].conv_impl == "patches"
    # Same parameter tree, same initial values: checkpoints do not depend on the choice.
    variables = {}
    for impl, state in states.items():
        variables[impl] = {"params": state.params, "batch_stats": state.batch_stats}
    assert jax.tree_util.tree_structure(variables["auto"]) == jax.tree_util.tree_structure(
        variables["xla"]
    )
    for a, b in zip(*(jax.tree_util.tree_leaves(v) for v in variables.values()), strict=True):
        np.testing.assert_array_equal(a, b)
    images = jax.random.randint(jax.random.key(1), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
    outputs = {
        impl: jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))(variables["xla"], images)
        for impl, model in models.items()
    }
    np.testing.assert_array_equal(outputs["auto"], outputs["xla"])
    # The inference program itself is the same (the custom_vjp only adds a gradient rule).
    lowered = {
        impl: jax.jit(lambda x, m=model: m.apply(variables["xla"], x, train=False))
        .lower(images)
        .as_text()
        for impl, model in models.items()
    }
    assert _no_locations(lowered["auto"]) == _no_locations(lowered["xla"])

    # ... and its gradient really takes the per-tap matmuls (3 convolutions x 9 taps).
    def grad_dots(model):
        def loss(params):
            logits, _ = model.apply(
                {"params": params, "batch_stats": variables["xla"]["batch_stats"]},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.mean(logits**2)

        return _num_dots(jax.grad(loss), variables["xla"]["params"])

    assert grad_dots(models["auto"]) - grad_dots(models["xla"]) == 3 * 9


@pytest.mark.parametrize("conv_impl", ["patches", "auto"])
def test_export_of_a_patches_model_is_the_xla_program_for_cpu_and_cuda(conv_impl):
    # jax.export lowers with symbolic height and width: the size rule of the patches path
    # cannot be decided there, and the artefact (cpu and cuda) must not carry a CPU choice.
    from unet_jax.deploy.export import export_model

    kwargs = dict(num_classes=3, features=(64,), bridge_features=64)
    images = jax.random.randint(jax.random.key(1), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
    reference = UNet(**kwargs)
    variables = reference.init(jax.random.key(0), images, train=False)
    exported = export_model(UNet(**kwargs, conv_impl=conv_impl), variables)
    assert exported.platforms == ("cpu", "cuda")
    expected = export_model(reference, variables)
    assert _no_locations(exported.mlir_module()) == _no_locations(expected.mlir_module())
    np.testing.assert_allclose(
        exported.call(images),
        reference.apply(variables, images, train=False),
        rtol=1e-5,
        atol=1e-5,
    )
    # Also without export_model's switch to "xla": symbolic sizes fall back to XLA's
    # convolution instead of failing on the undecidable size comparison.
    shape = jax.export.symbolic_shape("b, 16*h, 16*w, 3")
    patches = UNet(**kwargs, conv_impl="patches")
    direct = jax.export.export(
        jax.jit(lambda x: patches.apply(variables, x, train=False)), platforms=("cpu", "cuda")
    )(jax.ShapeDtypeStruct(shape, jnp.uint8))
    np.testing.assert_allclose(direct.call(images), exported.call(images), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- bfloat16 training


def _pattern_batch(config, n=8):
    """A learnable scene: left half class 3, right half 7, a square of 10; colours match."""
    h, w = config.image_size
    labels = np.full((n, h, w), 3, np.uint8)
    labels[:, :, w // 2 :] = 7
    labels[:, 8:16, 8:16] = 10
    labels[:, :2, :2] = 255
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (n, h, w, 3)).astype(np.uint8)
    images[labels == 3] += np.array([150, 0, 0], np.uint8)
    images[labels == 7] += np.array([0, 150, 0], np.uint8)
    images[labels == 10] += np.array([0, 0, 150], np.uint8)
    return {"image": images, "label": labels}


def _train_losses(dtype: str, steps: int, conv_impl: str = "auto", config=None):
    config = tiny.get_config() if config is None else config
    config.model.dtype = dtype
    config.model.conv_impl = conv_impl
    config.loss = "dice_ce"
    config.learning_rate = 3e-2
    config.schedule = "constant"
    config.warmup_steps = 0
    state = create_train_state(config, rng=jax.random.key(0), total_steps=steps)
    model = create_model(config, bn_axis_name=parallel.AXIS)
    driver = parallel.make_driver(
        "pmap",
        model_apply=model.apply,
        loss_fn=make_loss_fn(config),
        num_classes=config.num_classes,
        devices=jax.devices()[:1],
    )
    batch = {k: v[None] for k, v in _pattern_batch(config).items()}
    device_state = driver.put_state(state)
    device_batch = driver.put_batch(batch)
    out = []
    for _ in range(steps):
        device_state, metrics = driver.train_step(device_state, device_batch)
        out.append(float(driver.get_metrics(metrics)["loss"]))
    return np.array(out), driver.get_state(device_state)


def test_bfloat16_training_tracks_float32_and_keeps_float32_state():
    steps = 20
    f32_losses, _ = _train_losses("float32", steps)
    bf16_losses, bf16_state = _train_losses("bfloat16", steps)
    # Both learn (the comparison below is not between two flat lines)...
    assert f32_losses[-1] < 0.5 * f32_losses[0], f32_losses
    assert bf16_losses[-1] < 0.5 * bf16_losses[0], bf16_losses
    # ...bf16 really computed in bf16 (not bit-identical), yet the curves agree: bf16's
    # ~3 significant digits perturb the loss by far less than its decrease (measured: at
    # most 0.5% over the first 10 steps, 5% at step 20 as the runs drift apart).
    assert not np.array_equal(f32_losses, bf16_losses)
    np.testing.assert_allclose(bf16_losses[:10], f32_losses[:10], rtol=0.02)
    np.testing.assert_allclose(bf16_losses, f32_losses, rtol=0.1)
    # Parameters, Adam moments and BatchNorm statistics stay float32.
    for tree in (bf16_state.params, bf16_state.opt_state, bf16_state.batch_stats):
        for leaf in jax.tree_util.tree_leaves(tree):
            if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
                assert jnp.asarray(leaf).dtype == jnp.float32


# --------------------------------------------------------------- PyTorch reference


@pytest.fixture(scope="module")
def torch_unet():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed (optional: only the benchmark uses it)")
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import torch_unet as module
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    return module


def test_torch_unet_has_the_reference_parameter_count(torch_unet):
    assert torch_unet.count_params(torch_unet.TorchUNet()) == 31_038_413


@pytest.mark.parametrize("train", [False, True])
def test_torch_unet_computes_the_flax_unet(torch_unet, train):
    import torch

    features, bridge = (4, 8), 16
    flax_model = UNet(num_classes=13, features=features, bridge_features=bridge)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    variables = flax_model.init(jax.random.key(0), images, train=False)
    # Non-trivial BatchNorm statistics, so eval mode tests that they are copied.
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda x: x + 0.3 * np.random.default_rng(1).random(x.shape, np.float32),
        variables["batch_stats"],
    )
    if train:
        expected, _ = flax_model.apply(variables, images, train=True, mutable=["batch_stats"])
    else:
        expected = flax_model.apply(variables, images, train=False)

    model = torch_unet.TorchUNet(13, features, bridge)
    assert torch_unet.count_params(model) == count_params(variables["params"])
    torch_unet.load_flax_variables(model, variables)
    model.train(train)
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        got = model(torch.from_numpy(images).permute(0, 3, 1, 2))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_torch_soft_dice_equals_the_jax_soft_dice(torch_unet):
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 8, 6, 13)).astype(np.float32)
    labels = rng.integers(0, 13, (3, 8, 6)).astype(np.int64)
    labels[0, :3] = 255  # ignored pixels
    labels[1] = 4  # most classes absent from this image
    expected = losses.soft_dice_loss(logits, labels, num_classes=13)
    got = torch_unet.soft_dice_loss(
        torch.from_numpy(logits).permute(0, 3, 1, 2), torch.from_numpy(labels), num_classes=13
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
