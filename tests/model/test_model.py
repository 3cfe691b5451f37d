"""UNet: parameter count, shapes, dtypes, input checks, up-convolution equivalence."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.model.param_count import expected_param_count
from unet_jax.model.unet import UNet, Upsample2x, count_params, probabilities

TINY = dict(features=(4, 8), bridge_features=16)


def _init(model, shape):
    return model.init(jax.random.key(0), jnp.zeros(shape, jnp.uint8), train=False)


def test_reference_parameter_count():
    variables = jax.eval_shape(lambda: _init(UNet(num_classes=13), (1, 32, 32, 3)))
    assert count_params(variables["params"]) == 31_038_413
    assert expected_param_count() == 31_038_413


def test_reference_config_shapes_without_computing():
    # The full recipe of unet_jax/configs/default.py, traced abstractly (no FLOPs): the
    # model the config builds, its train state (Adam: two moments per parameter) and one
    # training step's output at the configured image and batch size.
    from unet_jax.configs import default
    from unet_jax.model.factory import create_model
    from unet_jax.train.init_state import create_train_state

    config = default.get_config()
    config.num_classes = 13
    state = jax.eval_shape(
        lambda key: create_train_state(config, rng=key, total_steps=10), jax.random.key(0)
    )
    assert count_params(state.params) == 31_038_413
    # Adam's mu and nu, its step count and the schedule's.
    assert count_params(state.opt_state) == 2 * 31_038_413 + 2
    stats = jax.tree_util.tree_leaves(state.batch_stats)
    assert sum(x.size for x in stats) == 2 * (2 * (64 + 128 + 256 + 512) * 2 + 2 * 1024)
    model = create_model(config)
    height, width = config.image_size
    images = jax.ShapeDtypeStruct((config.batch_size, height, width, 3), jnp.uint8)
    logits, _ = jax.eval_shape(
        lambda p, b, x: model.apply(
            {"params": p, "batch_stats": b}, x, train=True, mutable=["batch_stats"]
        ),
        state.params,
        state.batch_stats,
        images,
    )
    assert logits.shape == (16, 256, 256, 13) and logits.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_classes=5, features=(8, 16, 32), bridge_features=64),
        dict(num_classes=13, features=(4, 8), bridge_features=16, use_batchnorm=False),
        dict(num_classes=2, features=(16,), bridge_features=32),
    ],
)
def test_parameter_count_matches_formula(kwargs):
    variables = jax.eval_shape(lambda: _init(UNet(**kwargs), (1, 16, 16, 3)))
    assert count_params(variables["params"]) == expected_param_count(**kwargs)
    assert ("batch_stats" in variables) == kwargs.get("use_batchnorm", True)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 48, 64, 3), (3, 16, 80, 3)])
def test_output_shapes(shape):
    model = UNet(num_classes=7, **TINY)
    variables = _init(model, shape)
    logits = model.apply(variables, jnp.ones(shape, jnp.uint8) * 100, train=False)
    assert logits.shape == shape[:3] + (7,)
    assert logits.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(1, 30, 32, 3), (1, 32, 20, 3), (1, 32, 32, 4), (32, 32, 3)])
def test_bad_input_shape_is_a_clear_error(shape):
    model = UNet(num_classes=3, features=(4, 8, 8, 8), bridge_features=8)
    with pytest.raises(ValueError, match="multiples of 16|shape"):
        model.init(jax.random.key(0), jnp.zeros(shape), train=False)


def _primitive_dtypes(jaxpr, names):
    """(primitive, input dtypes, output dtypes) of every ``names`` equation, sub-jaxprs too."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            found.append(
                (
                    eqn.primitive.name,
                    tuple(str(v.aval.dtype) for v in eqn.invars),
                    tuple(str(v.aval.dtype) for v in eqn.outvars),
                )
            )
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found += _primitive_dtypes(sub.jaxpr, names)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found += _primitive_dtypes(sub, names)
    return found


# TINY (2 encoder levels): 2 convolutions in each of 2 encoder, 1 bridge and 2 decoder
# blocks, plus the 1x1 head; one einsum (dot_general) per decoder up-convolution.
TINY_CONVS, TINY_UPSAMPLES = 2 * 5 + 1, 2


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_every_convolution_computes_in_the_model_dtype(dtype):
    model = UNet(num_classes=4, dtype=dtype, **TINY)
    variables = _init(model, (2, 32, 32, 3))
    images = jnp.zeros((2, 32, 32, 3), jnp.uint8)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, images).jaxpr
    want = str(jnp.dtype(dtype))
    convs = _primitive_dtypes(jaxpr, {"conv_general_dilated"})
    assert len(convs) == TINY_CONVS
    for name, ins, outs in convs:
        assert ins == (want, want) and outs == (want,), (name, ins, outs)
    upsamples = _primitive_dtypes(jaxpr, {"dot_general"})
    assert len(upsamples) == TINY_UPSAMPLES
    for name, ins, outs in upsamples:
        assert ins == (want, want) and outs == (want,), (name, ins, outs)
    # The returned logits are float32 whatever the compute dtype.
    assert [str(v.aval.dtype) for v in jaxpr.outvars] == ["float32"]


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = UNet(num_classes=4, dtype=jnp.bfloat16, **TINY)
    variables = _init(model, (2, 32, 32, 3))
    leaves = jax.tree_util.tree_leaves(variables)
    assert leaves and all(x.dtype == jnp.float32 for x in leaves)
    images = jax.random.randint(jax.random.key(1), (2, 32, 32, 3), 0, 256).astype(jnp.uint8)
    out_bf16 = model.apply(variables, images, train=False)
    out_f32 = UNet(num_classes=4, **TINY).apply(variables, images, train=False)
    assert out_bf16.dtype == jnp.float32
    # bf16 has ~3 significant digits: close to, but not equal to, the float32 result.
    np.testing.assert_allclose(out_bf16, out_f32, rtol=0.1, atol=0.1)
    assert not np.array_equal(np.asarray(out_bf16), np.asarray(out_f32))

    # Training keeps float32 parameters and BatchNorm statistics too.
    _, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
    stats = jax.tree_util.tree_leaves(updates["batch_stats"])
    assert stats and all(x.dtype == jnp.float32 for x in stats)
    grads = jax.grad(
        lambda p: model.apply(
            {**variables, "params": p}, images, train=True, mutable=["batch_stats"]
        )[0].sum()
    )(variables["params"])
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))


# ImageNet statistics in 0..1 units, written out here as the oracle (not imported).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.mark.parametrize("use_batchnorm", [False, True])
def test_normalisation_is_the_first_op(use_batchnorm):
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    model = UNet(num_classes=3, use_batchnorm=use_batchnorm, **TINY)
    variables = _init(model, (2, 16, 16, 3))
    # Random (not freshly initialised) BatchNorm statistics, so nothing is an identity.
    if use_batchnorm:
        keys = iter(jax.random.split(jax.random.key(7), 64))

        def random_stat(path, x):
            low, high = (
                (0.5, 1.5) if jax.tree_util.keystr(path).endswith("['var']") else (-0.2, 0.2)
            )
            return jax.random.uniform(next(keys), x.shape, minval=low, maxval=high)

        stats = jax.tree_util.tree_map_with_path(random_stat, variables["batch_stats"])
        variables = {"params": variables["params"], "batch_stats": stats}
    # Oracle: normalise by hand in float64, then the same network with an identity
    # normalisation (mean 0, std 1/255 in 0..1 units: x -> x).
    by_hand = ((images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    identity = UNet(
        num_classes=3, use_batchnorm=use_batchnorm, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, **TINY
    )
    want = identity.apply(variables, by_hand, train=False)
    got = model.apply(variables, images, train=False)
    assert np.abs(np.asarray(got)).max() > 0.1  # not a dead (all-zero) network
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # uint8 and float input in 0..255 are the same thing.
    from_float = model.apply(variables, images.astype(np.float32), train=False)
    np.testing.assert_allclose(got, from_float, rtol=1e-6)
    # The oracle can tell: the un-normalised image gives another output.
    assert not np.allclose(got, identity.apply(variables, images, train=False), atol=1e-3)


def test_dropout_only_in_training():
    model = UNet(num_classes=3, dropout_rate=0.5, **TINY)
    variables = _init(model, (1, 16, 16, 3))
    x = jnp.full((1, 16, 16, 3), 128, jnp.uint8)
    a = model.apply(variables, x, train=False)
    b = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(a, b)
    run = lambda seed: model.apply(  # noqa: E731
        variables, x, train=True, rngs={"dropout": jax.random.key(seed)}, mutable=["batch_stats"]
    )[0]
    assert not np.allclose(run(0), run(1))


@pytest.mark.parametrize("method", ["einsum", "transpose"])
def test_upsample_equals_flax_conv_transpose(method):
    x = jax.random.normal(jax.random.key(1), (2, 5, 7, 6))
    params = Upsample2x(4, method).init(jax.random.key(2), x)["params"]
    params = {
        "kernel": jax.random.normal(jax.random.key(3), params["kernel"].shape),
        "bias": jax.random.normal(jax.random.key(4), params["bias"].shape),
    }
    ours = Upsample2x(4, method).apply({"params": params}, x)
    reference = nn.ConvTranspose(4, (2, 2), strides=(2, 2), padding="VALID").apply(
        {"params": params}, x
    )
    assert ours.shape == (2, 10, 14, 4)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)

    # Gradients agree too (the einsum path exists for its faster gradient).
    def loss(p, module):
        return jnp.sum(jnp.sin(module.apply({"params": p}, x)))

    g_ours = jax.grad(loss)(params, Upsample2x(4, method))
    g_ref = jax.grad(loss)(params, nn.ConvTranspose(4, (2, 2), strides=(2, 2), padding="VALID"))
    for k in params:
        np.testing.assert_allclose(g_ours[k], g_ref[k], rtol=1e-4, atol=1e-4)


def test_probabilities():
    logits = jnp.array([[0.0, 1.0, -1.0]])
    np.testing.assert_allclose(probabilities(logits).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        probabilities(logits, "sigmoid"), 1 / (1 + np.exp(-logits)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="tanh"):
        probabilities(logits, "tanh")
