"""The U-Net as an ONNX graph, written from the Flax variables with ``onnx.helper``.

``python -m unet_jax.export --workdir DIR --format onnx --out model.onnx`` writes

- ``model.onnx``: ``images -> logits``, opset 17. Input ``images``: uint8 RGB NHWC
  ``[batch, height, width, 3]`` in 0..255 (symbolic batch, height and width; height and
  width must be multiples of the model's size multiple, 16 for the 4-level U-Net). Output
  ``logits``: float32 NHWC ``[batch, height, width, num_classes]``, the same numbers
  ``unet_jax.make_apply_fn`` returns (logits for softmax and sigmoid heads
  alike: the activation is applied by the consumer, see the sidecar's ``output``).
- ``model.onnx.json``: the sidecar of the ``jax.export`` artefact (class names, palette,
  normalisation, input/output spec, config, checkpoint, commits) plus an ``onnx`` entry.

The graph: Transpose to NCHW (on the uint8 input), Cast, Sub mean / Div std (the model's
own normalisation, so consumers pass raw pixels), then per 3x3 convolution one ``Conv``
whose weights and bias have the BatchNorm (running statistics) folded in, ``Relu``;
``MaxPool`` 2x2; ``ConvTranspose`` 2x2 stride 2 for the up-convolution (both of the
model's ``upsample`` methods compute this function from the same parameters); the
decoder's concatenation [up, skip] as two convolutions added (see ``conv_block``); the
1x1 head ``Conv``; Transpose back to NHWC. Dropout is the identity at
inference and has no node. NCHW inside is what ONNX Runtime's CPU provider runs fastest
(it rewrites such convolutions to its blocked NCHWc kernels). Weights are float32 also
for models that compute in bfloat16 (their parameters are float32).
"""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
from typing import Any

import numpy as np

from unet_jax.errors import InferenceError
from unet_jax.model.unet import UNet
from unet_jax.run.loading import DEFAULT_CHECKPOINT, LoadedRun, load_run

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# ConvBlock's nn.BatchNorm(epsilon=1e-5): folding must use the same epsilon. A mismatch
# would show in the parity tests, whose BatchNorm statistics are far from 0 and 1.
BATCHNORM_EPSILON = 1e-5

UPCONV_OPS = ("conv_transpose", "depth_to_space")


class OnnxExportError(InferenceError, RuntimeError):
    """The model could not be written as ONNX; the message says why."""


def require_onnx() -> Any:
    """Imports ``onnx``, or raises OnnxExportError with the install line."""
    try:
        import onnx
    except ImportError as e:
        raise OnnxExportError(
            "ONNX export needs the optional 'onnx' package: pip install -e '.[onnx]'"
        ) from e
    return onnx


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


class _Graph:
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


class _Params:
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
    graph: _Graph,
    p: _Params,
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
    graph: _Graph, p: _Params, x: str, scope: tuple[str, ...], *, upconv: str = "conv_transpose"
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


def _unet_body(graph: _Graph, p: _Params, x: str, model: UNet, *, upconv: str) -> str:
    """The classic U-Net from the normalised input to the last decoder block's output."""
    bn = bool(model.use_batchnorm)
    skips = []
    for i in range(len(model.features)):
        skip = conv_block(graph, p, x, (f"EncoderBlock_{i}", "ConvBlock_0"), bn=bn)
        skips.append(skip)
        x = graph.node("MaxPool", [skip], kernel_shape=[2, 2], strides=[2, 2])
    x = conv_block(graph, p, x, ("ConvBlock_0",), bn=bn)
    return decoder_blocks(graph, p, x, skips, bn=bn, upconv=upconv)


def decoder_blocks(
    graph: _Graph,
    p: _Params,
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


def build_model(model: UNet, variables: Any, *, upconv: str = "conv_transpose") -> Any:
    """The ONNX model of ``model.apply(variables, images, train=False)``.

    Args:
      model: the UNet (any widths, BatchNorm on or off, any head, either upsample method,
        any dropout rate, float32 or bfloat16 compute) or a ResNetUNet (``onnx_resnet``).
      variables: ``{"params": ..., "batch_stats": ...}`` (no batch_stats without BatchNorm).
      upconv: how the 2x2 stride-2 up-convolutions are written, one of ``UPCONV_OPS``
        (see ``up_conv``).

    Returns:
      A checked ``onnx.ModelProto`` (opset 17), float32 weights.

    Raises:
      OnnxExportError: onnx is missing, or the variables do not fit the model.
    """
    if upconv not in UPCONV_OPS:
        raise OnnxExportError(f"upconv must be one of {UPCONV_OPS}, got {upconv!r}")
    onnx = require_onnx()
    helper, tensor = onnx.helper, onnx.TensorProto
    graph, p = _Graph(onnx), _Params(variables)

    x = graph.node("Transpose", [INPUT_NAME], perm=[0, 3, 1, 2])  # uint8: 4x less to move
    x = graph.node("Cast", [x], to=tensor.FLOAT)
    # Exactly the model's float32 arithmetic: (x - mean * 255) / (std * 255).
    mean = np.asarray(model.mean, np.float32) * np.float32(255.0)
    std = np.asarray(model.std, np.float32) * np.float32(255.0)
    x = graph.node("Sub", [x, graph.const("mean", mean.reshape(1, 3, 1, 1))])
    x = graph.node("Div", [x, graph.const("std", std.reshape(1, 3, 1, 1))])

    if getattr(model, "encoder", "unet") != "unet":
        from unet_jax.deploy import (
            onnx_resnet,  # the ResNet encoders' graph (it imports this module)
        )

        x = onnx_resnet.resnet_unet_body(graph, p, x, model, upconv=upconv)
    else:
        x = _unet_body(graph, p, x, model, upconv=upconv)
    head = p("params", "Conv_0", "kernel")  # [1, 1, C, num_classes]
    x = graph.node(
        "Conv",
        [
            x,
            graph.const("head_w", np.transpose(head, (3, 2, 0, 1))),
            graph.const("head_b", p("params", "Conv_0", "bias")),
        ],
        kernel_shape=[1, 1],
    )
    graph.node("Transpose", [x], output=OUTPUT_NAME, perm=[0, 2, 3, 1])
    p.check_all_used()

    num_classes = int(model.num_classes)
    onnx_graph = helper.make_graph(
        graph.nodes,
        "unet_jax",
        [helper.make_tensor_value_info(INPUT_NAME, tensor.UINT8, ["batch", "height", "width", 3])],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, tensor.FLOAT, ["batch", "height", "width", num_classes]
            )
        ],
        initializer=graph.initializers,
    )
    proto = helper.make_model(
        onnx_graph,
        producer_name="unet_jax",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=(
            f"U-Net, uint8 RGB NHWC [batch, H, W, 3] (H, W multiples of {model.size_multiple})"
            f" -> float32 logits NHWC [batch, H, W, {num_classes}]"
        ),
    )
    # The IR version of opset 17 (onnx 1.12), not the newest onnx writes by default: older
    # ONNX Runtime releases refuse IR versions they do not know.
    proto.ir_version = IR_VERSION
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise OnnxExportError(f"the generated ONNX graph does not validate: {e}") from e
    return proto


def onnx_sidecar(run: LoadedRun, proto: Any) -> dict[str, Any]:
    """The jax.export sidecar (``unet_jax.deploy.export.run_sidecar``) plus an ``onnx`` entry.

    Args:
      run: the loaded run.
      proto: the written model.

    Returns:
      A JSON-serialisable dict.
    """
    from unet_jax.deploy.export import run_sidecar

    side = run_sidecar(run, platforms=["onnx"])
    side["onnx"] = {
        "opset": OPSET,
        "ir_version": int(proto.ir_version),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "internal_layout": "NCHW (Transpose at input and output)",
        "batchnorm": "folded into the convolutions" if run.model.use_batchnorm else "none",
        "weights_dtype": "float32",
        "compute_dtype_of_run": str(np.dtype(run.model.dtype).name),
    }
    side["versions"]["onnx"] = importlib.metadata.version("onnx")
    return side


def export_onnx_run(
    workdir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    checkpoint: str | int = DEFAULT_CHECKPOINT,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes a run's checkpoint as ONNX to ``out`` and its sidecar to ``out + ".json"``.

    Args:
      workdir: the training run directory.
      out: the model's path (conventionally ``*.onnx``).
      checkpoint: "best", "latest" or a step number.

    Returns:
      (model path, sidecar path).

    Raises:
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: see
        ``unet_jax.run.loading.load_run``.
      OnnxExportError: onnx is missing or the graph cannot be built.
    """
    require_onnx()
    run = load_run(workdir, checkpoint=checkpoint)
    proto = build_model(run.model, run.variables)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(onnx_sidecar(run, proto), indent=2) + "\n")
    return out, side
