"""The building blocks of the hand-written ONNX graphs (``onnx_export``, ``onnx_resnet``).

A graph under construction (`Graph`), the Flax variables read by path (`Params`), and the
U-Net's pieces as ONNX nodes: BatchNorm folded into convolutions, the 3x3 ConvBlock, the
2x2 up-convolution and the decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_jax.errors import InferenceError, import_optional

# ConvBlock's nn.BatchNorm(epsilon=1e-5): folding must use the same epsilon. A mismatch
# would show in the parity tests, whose BatchNorm statistics are far from 0 and 1.
BATCHNORM_EPSILON = 1e-5

UPCONV_OPS = ("conv_transpose", "depth_to_space")


class OnnxExportError(InferenceError, RuntimeError):
    """The model could not be written as ONNX; the message says why."""


def require_onnx() -> Any:
    """Imports ``onnx``, or raises OnnxExportError with the install line."""
    return import_optional(
        "onnx",
        OnnxExportError,
        "ONNX export needs the optional 'onnx' package: pip install -e '.[onnx]'",
    )


def fold_batchnorm(
    kernel: np.ndarray,
    *,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    epsilon: float = BATCHNORM_EPSILON,
) -> tuple[np.ndarray, np.ndarray]:
    """Folds an inference-mode BatchNorm into the bias-free convolution before it.

    ``bn(conv(x, k)) = conv(x, k * s) + (bias - mean * s)`` with
    ``s = scale / sqrt(var + epsilon)`` per output channel. Computed in float64.

    Args:
      kernel: the convolution's kernel, output channels LAST (Flax's HWIO).
      scale, bias: the BatchNorm's parameters [O].
      mean, var: its running statistics [O].
      epsilon: its epsilon.

    Returns:
      (kernel, bias) of the equivalent convolution, float64, kernel in the input layout.
    """
    s = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + epsilon)
    folded_kernel = np.asarray(kernel, np.float64) * s
    folded_bias = np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * s
    return folded_kernel, folded_bias


class Graph:
    """Collects nodes and float32 initializers under unique names."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(
            self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name)
        )
        return name

    def node(self, op: str, inputs: list[str], *, output: str | None = None, **attrs: Any) -> str:
        output = output or self.name(op.lower())
        self.nodes.append(
            self.onnx.helper.make_node(op, inputs, [output], name=self.name(op), **attrs)
        )
        return output


class Params:
    """Reads a Flax variable tree by path and remembers what was read.

    Every leaf must be used exactly once by the graph: a model change that adds a layer
    the builder does not know fails the export instead of writing a wrong graph.
    """

    def __init__(self, variables: Any) -> None:
        import flax

        self._leaves = {
            "/".join(path): np.asarray(value, np.float32)
            for path, value in flax.traverse_util.flatten_dict(
                flax.core.unfreeze(dict(variables))
            ).items()
        }
        self._used: set[str] = set()

    def __call__(self, *path: str) -> np.ndarray:
        key = "/".join(path)
        if key not in self._leaves:
            raise OnnxExportError(f"the model's variables have no {key!r}")
        self._used.add(key)
        return self._leaves[key]

    def has(self, *path: str) -> bool:
        """Whether the variables have this leaf."""
        return "/".join(path) in self._leaves

    def shape(self, *path: str) -> tuple[int, ...]:
        """A leaf's shape, without marking it used."""
        return tuple(self._leaves["/".join(path)].shape)

    def check_all_used(self) -> None:
        unused = sorted(set(self._leaves) - self._used)
        if unused:
            raise OnnxExportError(f"the ONNX graph builder does not know the variables {unused}")


def conv_block(
    graph: Graph,
    p: Params,
    x: str,
    scope: tuple[str, ...],
    *,
    bn: bool,
    skip: str | None = None,
    up_channels: int = 0,
) -> str:
    """Two (3x3 Conv with folded BatchNorm -> Relu); dropout is the identity here.

    With ``skip`` the block's input is ``concat([x, skip])`` (a decoder block; ``x`` has
    ``up_channels`` channels D), computed without the concatenation: the first convolution
    is split along its input channels,
    ``conv(concat([x, skip]), k) = conv(x, k[:, :, :D]) + conv(skip, k[:, :, D:])``.
    ONNX Runtime keeps the encoder's skip in its blocked NCHWc layout this way; a Concat
    with the up-convolution's plain NCHW output made it convert the skip to NCHW and the
    concatenation back (1.4x-1.7x slower at the demo size, docs/ONNX.md).
    """
    for k in range(2):
        kernel = p("params", *scope, f"Conv_{k}", "kernel")  # HWIO
        if bn:
            kernel, bias = fold_batchnorm(
                kernel,
                scale=p("params", *scope, f"BatchNorm_{k}", "scale"),
                bias=p("params", *scope, f"BatchNorm_{k}", "bias"),
                mean=p("batch_stats", *scope, f"BatchNorm_{k}", "mean"),
                var=p("batch_stats", *scope, f"BatchNorm_{k}", "var"),
            )
        else:
            bias = p("params", *scope, f"Conv_{k}", "bias")
        weight = np.transpose(kernel, (3, 2, 0, 1))  # HWIO -> OIHW
        conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        if k == 0 and skip is not None:
            d = up_channels
            up = graph.node(
                "Conv",
                [x, graph.const("conv_w", weight[:, :d]), graph.const("conv_b", bias)],
                **conv,
            )
            across = graph.node("Conv", [skip, graph.const("conv_w", weight[:, d:])], **conv)
            x = graph.node("Add", [up, across])
        else:
            x = graph.node(
                "Conv", [x, graph.const("conv_w", weight), graph.const("conv_b", bias)], **conv
            )
        x = graph.node("Relu", [x])
    return x


def up_conv(
    graph: Graph, p: Params, x: str, scope: tuple[str, ...], *, upconv: str = "conv_transpose"
) -> str:
    """The 2x2 stride-2 up-convolution (``Upsample2x_0`` under ``scope``).

    ``upconv="conv_transpose"``: one ``ConvTranspose``. ``"depth_to_space"``: the same
    function as a 1x1 ``Conv`` to 4 D channels and ``DepthToSpace`` (blocksize 2, DCR:
    channel ``(2i + j) D + d`` goes to ``out[d, 2h + i, 2w + j]``); ONNX Runtime quantises
    a Conv to its int8 kernel but runs a quantised ConvTranspose in float32 between
    conversions.
    """
    kernel = p("params", *scope, "Upsample2x_0", "kernel")  # [2, 2, C, D]
    bias = p("params", *scope, "Upsample2x_0", "bias")
    # out[2h+i, 2w+j, d] = sum_c x[h, w, c] kernel[1-i, 1-j, c, d] + bias[d] (Upsample2x)
    # and ONNX ConvTranspose: out[d, 2h+i, 2w+j] = sum_c x[c, h, w] W[c, d, i, j] + b[d].
    weight = np.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))
    if upconv == "conv_transpose":
        return graph.node(
            "ConvTranspose",
            [x, graph.const("up_w", weight), graph.const("up_b", bias)],
            kernel_shape=[2, 2],
            strides=[2, 2],
        )
    c, d = weight.shape[:2]
    pointwise = np.transpose(weight, (2, 3, 1, 0)).reshape(4 * d, c, 1, 1)
    x = graph.node(
        "Conv",
        [x, graph.const("up_w", pointwise), graph.const("up_b", np.tile(bias, 4))],
        kernel_shape=[1, 1],
    )
    return graph.node("DepthToSpace", [x], blocksize=2, mode="DCR")


def decoder_blocks(
    graph: Graph,
    p: Params,
    x: str,
    skips: list[str],
    *,
    bn: bool,
    upconv: str = "conv_transpose",
) -> str:
    """``DecoderBlock_0..``: up-convolution, then a ConvBlock over [up, skip], deepest first."""
    for i, skip in enumerate(reversed(skips)):
        scope = (f"DecoderBlock_{i}",)
        x = up_conv(graph, p, x, scope, upconv=upconv)
        up_channels = p.shape("params", *scope, "Upsample2x_0", "kernel")[3]
        x = conv_block(
            graph, p, x, (*scope, "ConvBlock_0"), bn=bn, skip=skip, up_channels=up_channels
        )
    return x
