"""A 3x3 convolution's forward pass and input gradient as matmuls (benchmarks/conv_grad.py).

Per kernel tap (`conv_by_taps`) and by Winograd F(2x2, 3x3) (`winograd_conv`, with the
library's input transform, ``unet_jax.model.conv_fast.winograd_input``). Both lose to
XLA's own convolution on the CPU (docs/PERFORMANCE.md), so only the weight gradient's
matmul forms are in the library; these are measured, and checked against XLA in
tests/model/test_conv_weight_grads.py.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from unet_jax.model import conv_fast


def conv_by_taps(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]]) -> jax.Array:
    """A stride-1 NHWC/HWIO convolution as one [BHW, C] x [C, O] matmul per kernel tap.

    ``y = sum_{i,j} xpad[:, i:i+H', j:j+W', :] @ kernel[i, j]``, accumulated in float32.

    Args:
      x: input [B, H, W, C].
      kernel: [kh, kw, C, O].
      padding: ((top, bottom), (left, right)), non-negative.

    Returns:
      The convolution output [B, H', W', O].
    """
    kh, kw, c, o = kernel.shape
    xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    b, out_h, out_w = x.shape[0], xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i : i + out_h, j : j + out_w, :].reshape(-1, c)
            tap = jnp.dot(window, kernel[i, j], preferred_element_type=jnp.float32)
            y = tap if y is None else y + tap
    return y.reshape(b, out_h, out_w, o).astype(x.dtype)


def _winograd_kernel(kernel: jax.Array) -> jax.Array:
    """G g G^T: [3, 3, C, O] -> [16, C, O]."""
    g = jnp.asarray(conv_fast.WINOGRAD_G, jnp.float32)
    u = jnp.einsum("ai,ijco,bj->abco", g, kernel.astype(jnp.float32), g, precision="highest")
    return u.reshape(16, *kernel.shape[2:]).astype(kernel.dtype)


def _winograd_output(m: jax.Array, b: int, tiles_h: int, tiles_w: int) -> jax.Array:
    """A^T M A: [16, B*th*tw, O] -> [B, 2th, 2tw, O]."""
    o = m.shape[-1]
    m = m.reshape(4, 4, b, tiles_h, tiles_w, o)
    rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
    y = jnp.stack([jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]]) for r in rows])
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * tiles_h, 2 * tiles_w, o)


def winograd_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 3x3 "SAME" stride-1 NHWC/HWIO convolution by Winograd F(2x2, 3x3).

    Args:
      x: input [B, H, W, C] (odd H or W are padded to even and cropped).
      kernel: [3, 3, C, O].

    Returns:
      The convolution output [B, H, W, O], in ``x.dtype``.
    """
    b, h, w, _ = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    m = lax.dot_general(
        conv_fast.winograd_input(x, th, tw),
        _winograd_kernel(kernel),
        (((2,), (1,)), ((0,), (0,))),
        preferred_element_type=jnp.float32,
    )
    return _winograd_output(m, b, th, tw)[:, :h, :w].astype(x.dtype)


def winograd_input_grad(dy: jax.Array, kernel: jax.Array) -> jax.Array:
    """Input gradient of :func:`winograd_conv`: the convolution of dy with the flipped kernel.

    Args:
      dy: output gradient [B, H, W, O].
      kernel: [3, 3, C, O].

    Returns:
      dx [B, H, W, C].
    """
    return winograd_conv(dy, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
