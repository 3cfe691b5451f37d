"""A CPU fast path for the 3x3 convolutions' weight gradient (``conv_impl="patches"``).

XLA:CPU computes a convolution's weight gradient far slower than its forward pass on large
images with many channels. ``patches_conv_general_dilated`` keeps XLA's forward and input
gradient and computes the weight gradient as one matmul per kernel tap (a ``custom_vjp``):
the same function and the same parameters, so checkpoints do not depend on the choice.
``conv_impl="auto"`` (the configs' default) picks it on the CPU backend and XLA's own
gradient elsewhere (:func:`resolve_conv_impl`).
Measurements: docs/PERFORMANCE.md, benchmarks/conv_grad.py.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("auto", "xla", "patches")


def resolve_conv_impl(conv_impl: str, backend: str | None = None) -> str:
    """The concrete weight-gradient implementation that ``conv_impl`` stands for.

    "auto" is "patches" on the CPU backend, where the per-tap matmul weight gradient
    measured 1.4-1.5x faster training steps than XLA's own on both CPUs seen (AMD EPYC Zen 4,
    Intel Sapphire Rapids; docs/PERFORMANCE.md), and "xla" on every other backend (GPU, TPU),
    whose own convolution gradients (cuDNN, ...) a hand-written matmul would not beat.
    "xla" and "patches" are returned as they are. Both compute the same function with the
    same parameters, so the choice never affects checkpoints or exported models.

    Args:
      conv_impl: "auto", "xla" or "patches".
      backend: the platform to resolve for ("cpu", "gpu", "tpu", ...); None: JAX's
        default backend of this process.

    Returns:
      "xla" or "patches".

    Raises:
      ValueError: for any other ``conv_impl``.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    if conv_impl != "auto":
        return conv_impl
    if backend is None:
        backend = jax.default_backend()
    return "patches" if backend == "cpu" else "xla"


def kernel_grad_by_shifts(
    x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], padding: Sequence[tuple[int, int]]
) -> jax.Array:
    """Weight gradient of a stride-1 NHWC/HWIO convolution as one matmul per kernel tap.

    ``dW[i, j] = sum_{b,h,w} xpad[b, h+i, w+j, :]^T dy[b, h, w, :]``: for each of the
    ``kh*kw`` taps a [C, B*H*W] x [B*H*W, O] matmul over a shifted view of the padded input.
    XLA:CPU lowers its own weight-gradient convolution (a convolution whose window is the
    whole image) several times slower than a plain matmul of the same FLOPs; see
    docs/PERFORMANCE.md. (``lax.conv_general_dilated_patches`` would build the im2col
    matrix with a one-hot convolution: ``kh*kw*C/O`` times the FLOPs of the gradient.)
    """
    kh, kw, c, o = kernel_shape
    b, out_h, out_w, _ = dy.shape
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    dy_flat = dy.reshape(b * out_h * out_w, o)
    taps = []
    for i in range(kh):
        for j in range(kw):
            source = xp
            if taps:
                # Chain each tap's copy of x behind the previous matmul (XLA keeps the data
                # dependence, float x*0 is not folded): otherwise all kh*kw shifted copies
                # are made first and live at once.
                source = xp + jnp.zeros((), xp.dtype) * taps[-1][0, 0].astype(xp.dtype)
            window = source[:, i : i + out_h, j : j + out_w, :].reshape(b * out_h * out_w, c)
            taps.append(
                lax.dot_general(
                    window,
                    dy_flat,
                    (((0,), (0,)), ((), ())),
                    preferred_element_type=jnp.float32,
                )
            )
    return jnp.stack(taps).reshape(kh, kw, c, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_patches(x: jax.Array, kernel: jax.Array, padding: tuple) -> jax.Array:
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _conv_patches_fwd(x, kernel, padding):
    return _conv_patches(x, kernel, padding), (x, kernel)


def _conv_patches_bwd(padding, residuals, dy):
    x, kernel = residuals
    # Input gradient: XLA's own transposed convolution (fast on every backend).
    _, input_vjp = jax.vjp(
        lambda x_: lax.conv_general_dilated(
            x_, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        ),
        x,
    )
    (dx,) = input_vjp(dy)
    # A data dependence on dy makes the shifted copies of x wait for the backward pass:
    # without it XLA computes them right after the forward convolution and keeps kh*kw
    # copies of every such activation alive until the backward pass reaches the layer
    # (several GiB for the full U-Net). XLA:CPU drops lax.optimization_barrier before
    # scheduling, and does not fold a float multiplication by zero (NaN semantics).
    x = x + jnp.zeros((), x.dtype) * dy[(0,) * dy.ndim]
    dw = kernel_grad_by_shifts(x, dy, kernel.shape, padding)
    return dx, dw.astype(kernel.dtype)


_conv_patches.defvjp(_conv_patches_fwd, _conv_patches_bwd)


# Where the per-tap matmul weight gradient pays off, measured on XLA:CPU (jax 0.10.2,
# benchmarks/conv_grad.py, docs/PERFORMANCE.md): XLA's own weight-gradient convolution
# runs at a fraction of its forward speed on images of 64x64 pixels and more with 64+
# channels, while with fewer channels (thin matmuls) or smaller images XLA is as fast or
# faster. Convolutions outside these bounds keep XLA's gradient.
PATCHES_MIN_CHANNELS = 64
PATCHES_MIN_PIXELS = 64 * 64


def patches_conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    min_channels: int = PATCHES_MIN_CHANNELS,
    min_pixels: int = PATCHES_MIN_PIXELS,
) -> jax.Array:
    """``lax.conv_general_dilated`` whose weight gradient is a matmul per kernel tap.

    A drop-in for ``nn.Conv(conv_general_dilated=...)``: same forward (XLA's convolution),
    same input gradient (XLA's transposed convolution); only the weight gradient differs,
    computed by :func:`kernel_grad_by_shifts` when the convolution has at least
    ``min_channels`` input and output channels and ``min_pixels`` output pixels per image
    (elsewhere XLA's weight gradient is as fast, see ``PATCHES_MIN_CHANNELS``). Supports what
    the U-Net uses: 2-D NHWC/HWIO convolutions with stride 1, no dilation, one feature
    group, explicit or "SAME"/"VALID" padding.

    Args:
      lhs: input [B, H, W, C].
      rhs: kernel [kh, kw, C, O].
      window_strides: must be (1, 1).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      lhs_dilation, rhs_dilation: must be None or all ones.
      dimension_numbers: must describe NHWC/HWIO/NHWC (what ``nn.Conv`` passes).
      feature_group_count, batch_group_count: must be 1.
      precision, preferred_element_type: must be None.
      min_channels: smallest min(C, O) that takes the matmul weight gradient.
      min_pixels: smallest H' * W' that takes the matmul weight gradient.

    Returns:
      The convolution output [B, H', W', O].

    Raises:
      ValueError: for any configuration outside the supported one, naming the value.
    """
    if lhs.ndim != 4 or rhs.ndim != 4:
        raise ValueError(
            f"conv_impl='patches' supports 2-D convolutions only, got input shape {lhs.shape} "
            f"and kernel shape {rhs.shape}"
        )
    expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    if dimension_numbers is not None:
        given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        if given != expected:
            raise ValueError(
                "conv_impl='patches' supports NHWC/HWIO/NHWC convolutions only, got "
                f"dimension_numbers={dimension_numbers!r}"
            )
    checks = {
        "window_strides": (tuple(window_strides), (1, 1)),
        "lhs_dilation": (tuple(lhs_dilation or (1, 1)), (1, 1)),
        "rhs_dilation": (tuple(rhs_dilation or (1, 1)), (1, 1)),
        "feature_group_count": (feature_group_count, 1),
        "batch_group_count": (batch_group_count, 1),
        "precision": (precision, None),
        "preferred_element_type": (preferred_element_type, None),
    }
    for name, (value, supported) in checks.items():
        if value != supported:
            raise ValueError(f"conv_impl='patches' needs {name}={supported!r}, got {value!r}")
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if not all(isinstance(d, int) for d in lhs.shape[1:3]):
        # Symbolic height/width (jax.export with shape polymorphism): the size rule below
        # cannot be decided, and an exported function is an inference function whose
        # forward pass is XLA's convolution either way.
        return lax.conv_general_dilated(
            lhs, rhs, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    out_pixels = (lhs.shape[1] + sum(padding[0]) - rhs.shape[0] + 1) * (
        lhs.shape[2] + sum(padding[1]) - rhs.shape[1] + 1
    )
    if min(rhs.shape[2], rhs.shape[3]) < min_channels or out_pixels < min_pixels:
        return lax.conv_general_dilated(
            lhs, rhs, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    return _conv_patches(lhs, rhs, padding)


def conv_general_dilated_for(conv_impl: str) -> Any:
    """The ``conv_general_dilated`` callable for ``nn.Conv``.

    Args:
      conv_impl: "auto", "xla" or "patches" ("auto" resolved by :func:`resolve_conv_impl`
        for this process's default backend).

    Returns:
      None (Flax's default, XLA's convolution) or ``patches_conv_general_dilated``.

    Raises:
      ValueError: for an unknown ``conv_impl``.
    """
    if resolve_conv_impl(conv_impl) == "patches":
        return patches_conv_general_dilated
    return None
