"""The ResNet-encoder U-Nets (``unet_jax.resnet``) as ONNX nodes, for ``onnx_export.build_model``.

The encoder: per convolution one ``Conv`` with its BatchNorm folded in (PyTorch's
symmetric pads, strides 2 where torchvision has them), ``Relu``, ``MaxPool`` 3x3 stride 2
pad 1 after the stem, ``Add`` + ``Relu`` at the end of every residual block. The decoder
is the classic U-Net's (``onnx_graph.up_conv`` and ``onnx_graph.conv_block``), its last
block without a skip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_jax.deploy.onnx_graph import conv_block, decoder_blocks, fold_batchnorm, up_conv
from unet_jax.model.resnet import ARCHITECTURES, ENCODER_MODULE, ResNetUNet


def _conv_bn(
    graph: Any,
    p: Any,
    x: str,
    scope: tuple[str, ...],
    conv: str,
    bn: str,
    *,
    strides: int,
    relu: bool,
) -> str:
    """``conv`` (bias-free, PyTorch padding) with the BatchNorm ``bn`` folded in."""
    kernel, bias = fold_batchnorm(
        p("params", *scope, conv, "kernel"),
        scale=p("params", *scope, bn, "scale"),
        bias=p("params", *scope, bn, "bias"),
        mean=p("batch_stats", *scope, bn, "mean"),
        var=p("batch_stats", *scope, bn, "var"),
    )
    k = kernel.shape[0]
    x = graph.node(
        "Conv",
        [x, graph.const("conv_w", np.transpose(kernel, (3, 2, 0, 1))), graph.const("conv_b", bias)],
        kernel_shape=[k, k],
        strides=[strides, strides],
        pads=[k // 2] * 4,
    )
    return graph.node("Relu", [x]) if relu else x


def _block(
    graph: Any, p: Any, x: str, scope: tuple[str, ...], *, bottleneck: bool, strides: int
) -> str:
    """One BasicBlock or Bottleneck: main path, shortcut, Add, Relu."""
    if bottleneck:
        y = _conv_bn(graph, p, x, scope, "conv1", "bn1", strides=1, relu=True)
        y = _conv_bn(graph, p, y, scope, "conv2", "bn2", strides=strides, relu=True)
        y = _conv_bn(graph, p, y, scope, "conv3", "bn3", strides=1, relu=False)
    else:
        y = _conv_bn(graph, p, x, scope, "conv1", "bn1", strides=strides, relu=True)
        y = _conv_bn(graph, p, y, scope, "conv2", "bn2", strides=1, relu=False)
    if p.has("params", *scope, "downsample_0", "kernel"):
        x = _conv_bn(
            graph, p, x, scope, "downsample_0", "downsample_1", strides=strides, relu=False
        )
    return graph.node("Relu", [graph.node("Add", [y, x])])


def resnet_unet_body(
    graph: Any, p: Any, x: str, model: ResNetUNet, *, upconv: str = "conv_transpose"
) -> str:
    """The ResNetUNet from the normalised input to the last decoder block's output.

    Args:
      graph: the ``onnx_export`` graph under construction.
      p: the model's variables (``onnx_export``'s reader, which checks that all are used).
      x: the normalised NCHW input.
      model: the ResNetUNet.
      upconv: how the up-convolutions are written (``onnx_graph.up_conv``).

    Returns:
      The name of the full-resolution decoder output.
    """
    arch = ARCHITECTURES[model.encoder]
    scope = (ENCODER_MODULE,)
    x = _conv_bn(graph, p, x, scope, "conv1", "bn1", strides=2, relu=True)
    skips = [x]
    x = graph.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for stage, blocks in enumerate(arch.layers):
        for index in range(blocks):
            x = _block(
                graph,
                p,
                x,
                (*scope, f"layer{stage + 1}_{index}"),
                bottleneck=arch.block == "bottleneck",
                strides=2 if stage > 0 and index == 0 else 1,
            )
        skips.append(x)
    bn = bool(model.use_batchnorm)
    x = decoder_blocks(graph, p, skips.pop(), skips, bn=bn, upconv=upconv)
    x = up_conv(graph, p, x, (), upconv=upconv)
    return conv_block(graph, p, x, ("ConvBlock_0",), bn=bn)
