"""The matmul convolutions of ``unet_jax.model.conv_fast`` compute XLA's convolutions.

- Winograd F(2x2, 3x3) forward, input and weight gradient, the per-tap forward, and the
  row-block per-tap weight gradient equal ``lax.conv_general_dilated`` and its gradients
  for every 3x3 layer shape (input and output channels) of the full and demo U-Nets, on
  small images of even and odd sizes.
- ``conv_impl="patches"`` routes each U-Net layer to the weight gradient its size rule
  names, with XLA's gradients.
- A 20-step training run of the default ("auto") follows the "xla" run's loss curve with
  every route taken.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from benchmarks import conv_matmul
from tests.model.test_fast_paths import _train_losses
from unet_jax.configs import tiny
from unet_jax.model import conv_fast

DN = ("NHWC", "HWIO", "NHWC")
SAME = ((1, 1), (1, 1))


def _layer_channels(features, bridge):
    pairs, c = [], 3
    for width in features:
        pairs += [(c, width), (width, width)]
        c = width
    pairs += [(c, bridge), (bridge, bridge)]
    for width in reversed(features):
        pairs += [(2 * width, width), (width, width)]
    return pairs


# (c_in, c_out) of every 3x3 convolution of the full (64..512 + 1024) and demo (16..128 +
# 256) U-Nets, each once.
LAYERS = sorted(
    set(_layer_channels((64, 128, 256, 512), 1024) + _layer_channels((16, 32, 64, 128), 256))
)


def _side(c_in, c_out):
    """An image side that keeps each case fast, even or odd (alternating over the layers)."""
    if c_in * c_out <= 128 * 128:
        sides = (34, 17)
    elif c_in * c_out <= 256 * 256:
        sides = (18, 9)
    else:
        sides = (10, 5)
    return sides[(c_in + c_out) % 2 or (c_in // 16) % 2]


def _problem(c_in, c_out, side, batch=1, seed=0):
    kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (batch, side, side, c_in))
    w = jax.random.normal(kw, (3, 3, c_in, c_out)) / np.sqrt(9 * c_in)
    dy = jax.random.normal(kg, (batch, side, side, c_out))
    return x, w, dy


def _xla(x, w, dy):
    y, vjp = jax.vjp(
        lambda x_, w_: lax.conv_general_dilated(x_, w_, (1, 1), SAME, dimension_numbers=DN), x, w
    )
    return (y, *vjp(dy))


def _close(got, expected, rtol=1e-5):
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


@jax.jit
def _all_matmul_convolutions(x, w, dy):
    return (
        conv_matmul.winograd_conv(x, w),
        conv_matmul.conv_by_taps(x, w, SAME),
        conv_matmul.winograd_input_grad(dy, w),
        conv_fast.winograd_kernel_grad(x, dy),
        # A few rows per block: several blocks, and a last one shorter than the others.
        conv_fast.kernel_grad_by_row_blocks(x, dy, w.shape, SAME, block_pixels=4 * x.shape[2]),
    )


@pytest.mark.parametrize("c_in, c_out", LAYERS)
def test_matmul_convolutions_equal_xla_for_every_unet_layer(c_in, c_out):
    side = _side(c_in, c_out)
    x, w, dy = _problem(c_in, c_out, side)
    y, dx, dw = jax.jit(_xla)(x, w, dy)
    fwd_wino, fwd_taps, dx_wino, dw_wino, dw_blocks = _all_matmul_convolutions(x, w, dy)
    # float32: Winograd's transforms add a few roundings (measured ~1e-6 relative).
    _close(fwd_wino, y)
    _close(fwd_taps, y)
    _close(dx_wino, dx)
    _close(dw_wino, dw)
    _close(dw_blocks, dw)


def test_row_blocks_split_the_rows_into_blocks_of_the_requested_size():
    x, w, dy = _problem(4, 5, 12, batch=2)
    expected = _xla(x, w, dy)[2]
    for block_pixels, blocks in ((1, 12), (2 * 12 * 3, 4), (2 * 12 * 5, 3), (10**6, 1)):
        jaxpr = str(
            jax.make_jaxpr(
                lambda x_, dy_, bp=block_pixels: conv_fast.kernel_grad_by_row_blocks(
                    x_, dy_, w.shape, SAME, bp
                )
            )(x, dy)
        )
        assert (f"length={blocks}" in jaxpr) if blocks > 1 else ("scan" not in jaxpr)
        got = conv_fast.kernel_grad_by_row_blocks(x, dy, w.shape, SAME, block_pixels)
        _close(got, expected)


def _patches_grads(x, w, dy):
    def f(x_, w_):
        return conv_fast.patches_conv_general_dilated(x_, w_, (1, 1), "SAME", dimension_numbers=DN)

    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(dy))


@pytest.mark.parametrize(
    "side, c_in, c_out, route",
    [
        (64, 64, 64, "blocks"),  # the smallest layer for row blocks (batch 2: 2 blocks)
        (33, 256, 256, "winograd"),  # odd, just above WINOGRAD_MIN_PIXELS
        (32, 512, 256, "winograd"),  # dec1.a of the full U-Net at 256x256 (demo: 64->32)
        (31, 256, 256, "xla"),  # below WINOGRAD_MIN_PIXELS
        (32, 128, 256, "xla"),  # too few channels for Winograd
    ],
)
def test_patches_routes_each_layer_to_its_weight_gradient(side, c_in, c_out, route):
    x, w, dy = _problem(c_in, c_out, side, batch=2 if route == "blocks" else 1)
    got = jax.jit(_patches_grads)(x, w, dy)
    for g, e in zip(got, jax.jit(_xla)(x, w, dy), strict=True):
        _close(g, e)
    jaxpr = str(jax.make_jaxpr(_patches_grads)(x, w, dy))
    assert ("custom_vjp" in jaxpr) == (route != "xla")
    assert ("scan" in jaxpr) == (route == "blocks")
    # Winograd's weight gradient: one batched matmul over the 16 tile positions.
    assert ("dimension_numbers=(([1], [1]), ([0], [0]))" in jaxpr) == (route == "winograd")


def test_training_with_the_default_follows_xla_with_every_weight_gradient_route(monkeypatch):
    # The tiny U-Net (4, 8 channels, bridge 16, 32x32 images) is far below the CPU size
    # rules; lowered thresholds send its layers through all three weight gradients: row
    # blocks (32x32 and 16x16, >= 4 channels; 2-row blocks), Winograd (8x8 bridge, >= 16
    # channels) and XLA's (the 3->4 convolution).
    monkeypatch.setattr(conv_fast, "PATCHES_MIN_CHANNELS", 4)
    monkeypatch.setattr(conv_fast, "PATCHES_MIN_PIXELS", 16 * 16)
    monkeypatch.setattr(conv_fast, "WINOGRAD_MIN_CHANNELS", 16)
    monkeypatch.setattr(conv_fast, "WINOGRAD_MIN_PIXELS", 8 * 8)
    monkeypatch.setattr(conv_fast, "ROW_BLOCK_PIXELS", 8 * 32 * 2)
    routes = []
    real_route = conv_fast.weight_grad_route

    def recorded_route(*args, **kwargs):
        routes.append(real_route(*args, **kwargs))
        return routes[-1]

    monkeypatch.setattr(conv_fast, "weight_grad_route", recorded_route)
    steps = 20
    xla_losses, _ = _train_losses("float32", steps, conv_impl="xla", config=tiny.get_config())
    assert routes == []  # "xla" never asks for a route
    auto_losses, _ = _train_losses("float32", steps, conv_impl="auto", config=tiny.get_config())
    assert xla_losses[-1] < 0.5 * xla_losses[0], xla_losses  # it learns
    # Every route trained (not a rounding difference, which some CPUs do not show: on an
    # Intel Xeon with jax 0.10.2 the two curves are bitwise equal)...
    assert set(routes) == {"xla", "blocks", "winograd"}, routes
    # ...the same curve. Rounding differences compound over the 20 Adam steps: within 2e-4
    # on jax 0.10.2, up to 5.3e-4 on jax 0.12.1 (another XLA); a wrong gradient on any
    # route moves the curve by far more (the per-layer tests above check each to 1e-5).
    np.testing.assert_allclose(auto_losses, xla_losses, rtol=1e-3)
