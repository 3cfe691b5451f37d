"""UNet: parameter count, shapes, dtypes, input checks, up-convolution equivalence."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unet_jax.model import UNet, Upsample2x, count_params, expected_param_count, probabilities

TINY = dict(features=(4, 8), bridge_features=16)


def _init(model, shape):
    return model.init(jax.random.key(0), jnp.zeros(shape, jnp.uint8), train=False)


def test_reference_parameter_count():
    variables = jax.eval_shape(lambda: _init(UNet(num_classes=13), (1, 32, 32, 3)))
    assert count_params(variables["params"]) == 31_038_413
    assert expected_param_count() == 31_038_413


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


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = UNet(num_classes=4, dtype=jnp.bfloat16, **TINY)
    variables = _init(model, (2, 32, 32, 3))
    leaves = jax.tree_util.tree_leaves(variables)
    assert all(x.dtype == jnp.float32 for x in leaves)
    images = jax.random.randint(jax.random.key(1), (2, 32, 32, 3), 0, 256).astype(jnp.uint8)
    out_bf16 = model.apply(variables, images, train=False)
    out_f32 = UNet(num_classes=4, **TINY).apply(variables, images, train=False)
    assert out_bf16.dtype == jnp.float32
    # bf16 has ~3 significant digits: close to, but not equal to, the float32 result.
    np.testing.assert_allclose(out_bf16, out_f32, rtol=0.1, atol=0.1)
    assert not np.array_equal(np.asarray(out_bf16), np.asarray(out_f32))

    # Under jit the convolutions really run in bfloat16.
    hlo = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images).as_text()
    assert "bf16" in hlo


def test_normalisation_is_the_first_op():
    model = UNet(num_classes=3, use_batchnorm=False, **TINY)
    variables = _init(model, (1, 16, 16, 3))
    images = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    from_uint8 = model.apply(variables, images, train=False)
    from_float = model.apply(variables, images.astype(np.float32), train=False)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)


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
