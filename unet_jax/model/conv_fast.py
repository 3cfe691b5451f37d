"""A CPU fast path for the 3x3 convolutions' weight gradient (``conv_impl="patches"``).

XLA:CPU computes a convolution's weight gradient far slower than its forward pass on large
images with many channels. ``patches_conv_general_dilated`` keeps XLA's forward and input
gradient and computes the weight gradient with matmuls (a ``custom_vjp``): one per kernel
tap over blocks of rows (:func:`kernel_grad_by_row_blocks`) on large images, Winograd
F(2x2, 3x3) (:func:`winograd_kernel_grad`) on 32x32 layers of 256+ channels. The same
function and the same parameters, so checkpoints do not depend on the choice.
``conv_impl="auto"`` (the configs' default) picks it on the CPU backend and XLA's own
gradient elsewhere (:func:`resolve_conv_impl`). The forward pass and
input gradient as matmuls (benchmarks/conv_matmul.py) lose to XLA's own on the CPU.
Measurements: docs/PERFORMANCE.md, benchmarks/conv_grad.py."""

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


# Output pixels (all images) per block of kernel_grad_by_row_blocks: a block's input rows
# (B x rows x W x C) and their shifted copies stay in the caches (2 MiB L2 per core, 32 MiB
# L3 on the AMD EPYC measured), where the whole-image copies of kernel_grad_by_shifts are
# bound by the memory bandwidth.
ROW_BLOCK_PIXELS = 4096


def kernel_grad_by_row_blocks(
    x: jax.Array,
    dy: jax.Array,
    kernel_shape: Sequence[int],
    padding: Sequence[tuple[int, int]],
    block_pixels: int = ROW_BLOCK_PIXELS,
) -> jax.Array:
    """:func:`kernel_grad_by_shifts` summed over blocks of output rows in a ``lax.scan``.

    Args:
      x: input [B, H, W, C].
      dy: output gradient [B, H', W', O] of a stride-1 convolution.
      kernel_shape: (kh, kw, C, O).
      padding: ((top, bottom), (left, right)), non-negative.
      block_pixels: about how many output pixels (all images together) a block has; its
        row count is the largest divisor of H' that fits.

    Returns:
      dW [kh, kw, C, O] in float32.
    """
    kh, kw, c, o = kernel_shape
    b, out_h, out_w, _ = dy.shape
    fit = max(1, block_pixels // (b * out_w))
    rows = max(d for d in range(1, out_h + 1) if out_h % d == 0 and d <= fit)
    if rows == out_h:
        return kernel_grad_by_shifts(x, dy, kernel_shape, padding)
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))

    def block(acc, k):
        xs = lax.dynamic_slice_in_dim(xp, k * rows, rows + kh - 1, axis=1)
        dys = lax.dynamic_slice_in_dim(dy, k * rows, rows, axis=1).reshape(-1, o)
        taps = [
            lax.dot_general(
                xs[:, i : i + rows, j : j + out_w, :].reshape(-1, c),
                dys,
                (((0,), (0,)), ((), ())),
                preferred_element_type=jnp.float32,
            )
            for i in range(kh)
            for j in range(kw)
        ]
        return acc + jnp.stack(taps), None

    acc = jnp.zeros((kh * kw, c, o), jnp.float32)
    acc, _ = lax.scan(block, acc, jnp.arange(out_h // rows))
    return acc.reshape(kh, kw, c, o)


# Winograd F(2x2, 3x3) (Lavin and Gray, 2015): a 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A
# for the 4x4 input tile d around it, 16 multiplications per tile and channel pair instead
# of 36, so each of the three convolutions of a layer (forward, input and weight gradient)
# is 16 batched [tiles, C] x [C, O] matmuls with 2.25x fewer FLOPs than the direct one.
WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def _winograd_bt(a: jax.Array, axis: int) -> list[jax.Array]:
    """B^T along ``axis`` (length 2t + 2) for t tiles: [d0-d2, d1+d2, d2-d1, d1-d3]."""
    t = (a.shape[axis] - 2) // 2
    d = [lax.slice_in_dim(a, k, k + 2 * t - 1, stride=2, axis=axis) for k in range(4)]
    return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _winograd_a(a: jax.Array, axis: int) -> list[jax.Array]:
    """A along ``axis`` (length 2t) for t tiles: [y0, y0+y1, y0-y1, -y1]."""
    y0 = lax.slice_in_dim(a, 0, a.shape[axis] - 1, stride=2, axis=axis)
    y1 = lax.slice_in_dim(a, 1, a.shape[axis], stride=2, axis=axis)
    return [y0, y0 + y1, y0 - y1, -y1]


def winograd_input(x: jax.Array, tiles_h: int, tiles_w: int) -> jax.Array:
    """[B, H, W, C] (SAME-padded here to 2t + 2) -> the 16 transformed inputs [16, B*th*tw, C]."""
    _, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 2 * tiles_h + 1 - h), (1, 2 * tiles_w + 1 - w), (0, 0)))
    v = [col for row in _winograd_bt(xp, 1) for col in _winograd_bt(row, 2)]
    return jnp.stack(v).reshape(16, -1, c)


def winograd_kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """Weight gradient of a 3x3 "SAME" convolution by Winograd F(2x2, 3x3).

    ``dW = G^T [sum_tiles (B^T d B)^T (A dy A^T)] G``: 16 [C, tiles] x [tiles, O] matmuls.

    Args:
      x: input [B, H, W, C].
      dy: output gradient [B, H, W, O].

    Returns:
      dW [3, 3, C, O] in float32.
    """
    _, h, w, o = dy.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    dyp = jnp.pad(dy, ((0, 0), (0, 2 * th - h), (0, 2 * tw - w), (0, 0)))
    dm = jnp.stack([col for row in _winograd_a(dyp, 1) for col in _winograd_a(row, 2)])
    du = lax.dot_general(
        winograd_input(x, th, tw),
        dm.reshape(16, -1, o),
        (((1,), (1,)), ((0,), (0,))),
        preferred_element_type=jnp.float32,
    ).reshape(4, 4, x.shape[-1], o)
    g = jnp.asarray(WINOGRAD_G, jnp.float32)
    return jnp.einsum("ai,abco,bj->ijco", g, du, g, precision="highest")


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
    if _winograd_weight_grad(kernel.shape, padding, dy.shape[1] * dy.shape[2]):
        dw = winograd_kernel_grad(x, dy)
    else:
        dw = kernel_grad_by_row_blocks(x, dy, kernel.shape, padding, ROW_BLOCK_PIXELS)
    return dx, dw.astype(kernel.dtype)


_conv_patches.defvjp(_conv_patches_fwd, _conv_patches_bwd)


# Where the per-tap matmul weight gradient pays off, measured on XLA:CPU (jax 0.10.2,
# benchmarks/conv_grad.py, docs/PERFORMANCE.md): XLA's own weight-gradient convolution
# runs at a fraction of its forward speed on images of 64x64 pixels and more with 64+
# channels, while with fewer channels (thin matmuls) or smaller images XLA is as fast or
# faster. Convolutions outside these bounds keep XLA's gradient.
PATCHES_MIN_CHANNELS = 64
PATCHES_MIN_PIXELS = 64 * 64
# Below PATCHES_MIN_PIXELS, 3x3 "SAME" convolutions with this many channels and pixels
# take the Winograd F(2x2, 3x3) weight gradient (2.25x fewer FLOPs; faster than XLA's on
# the 32x32 layers of 256+ channels, not on 16x16 ones).
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_PIXELS = 32 * 32


def _winograd_weight_grad(kernel_shape: Sequence[int], padding: Sequence, out_pixels: int) -> bool:
    """Whether the weight gradient of this convolution takes :func:`winograd_kernel_grad`."""
    return (
        tuple(kernel_shape[:2]) == (3, 3)
        and tuple(map(tuple, padding)) == ((1, 1), (1, 1))
        and min(kernel_shape[2:]) >= WINOGRAD_MIN_CHANNELS
        and WINOGRAD_MIN_PIXELS <= out_pixels < PATCHES_MIN_PIXELS
    )


def weight_grad_route(
    kernel_shape: Sequence[int],
    padding: Sequence,
    out_pixels: int,
    *,
    min_channels: int | None = None,
    min_pixels: int | None = None,
) -> str:
    """The weight gradient :func:`patches_conv_general_dilated` gives a convolution.

    Args:
      kernel_shape: (kh, kw, C, O).
      padding: ((top, bottom), (left, right)).
      out_pixels: H' * W' of one output image.
      min_channels, min_pixels: as in :func:`patches_conv_general_dilated`.

    Returns:
      "winograd" (:func:`winograd_kernel_grad`), "blocks" (:func:`kernel_grad_by_row_blocks`)
      or "xla" (XLA's own).
    """
    if _winograd_weight_grad(kernel_shape, padding, out_pixels):
        return "winograd"
    min_channels = PATCHES_MIN_CHANNELS if min_channels is None else min_channels
    min_pixels = PATCHES_MIN_PIXELS if min_pixels is None else min_pixels
    if min(kernel_shape[2:]) >= min_channels and out_pixels >= min_pixels:
        return "blocks"
    return "xla"


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
    min_channels: int | None = None,
    min_pixels: int | None = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` whose weight gradient is computed with matmuls.

    A drop-in for ``nn.Conv(conv_general_dilated=...)``: same forward (XLA's convolution),
    same input gradient (XLA's transposed convolution); only the weight gradient differs,
    computed by :func:`kernel_grad_by_row_blocks` when the convolution has at least
    ``min_channels`` input and output channels and ``min_pixels`` output pixels per image,
    by :func:`winograd_kernel_grad` for 3x3 "SAME" convolutions with smaller images of at
    least ``WINOGRAD_MIN_PIXELS`` pixels and ``WINOGRAD_MIN_CHANNELS`` channels (elsewhere
    XLA's weight gradient is as fast, see ``PATCHES_MIN_CHANNELS``). Supports what
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
      min_channels: smallest min(C, O) that takes the matmul weight gradient (None:
        ``PATCHES_MIN_CHANNELS``).
      min_pixels: smallest H' * W' that takes the matmul weight gradient (None:
        ``PATCHES_MIN_PIXELS``).

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
    route = weight_grad_route(
        rhs.shape, padding, out_pixels, min_channels=min_channels, min_pixels=min_pixels
    )
    if route == "xla":
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
