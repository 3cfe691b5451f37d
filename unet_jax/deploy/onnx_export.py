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

from unet_jax import storage
from unet_jax.deploy import onnx_resnet
from unet_jax.deploy.onnx_graph import (
    UPCONV_OPS,
    Graph,
    OnnxExportError,
    Params,
    conv_block,
    decoder_blocks,
    require_onnx,
)
from unet_jax.deploy.sidecar import run_sidecar
from unet_jax.model.unet import UNet
from unet_jax.run.loading import DEFAULT_CHECKPOINT, LoadedRun, load_run

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def _unet_body(graph: Graph, p: Params, x: str, model: UNet, *, upconv: str) -> str:
    """The classic U-Net from the normalised input to the last decoder block's output."""
    bn = bool(model.use_batchnorm)
    skips = []
    for i in range(len(model.features)):
        skip = conv_block(graph, p, x, (f"EncoderBlock_{i}", "ConvBlock_0"), bn=bn)
        skips.append(skip)
        x = graph.node("MaxPool", [skip], kernel_shape=[2, 2], strides=[2, 2])
    x = conv_block(graph, p, x, ("ConvBlock_0",), bn=bn)
    return decoder_blocks(graph, p, x, skips, bn=bn, upconv=upconv)


# The input's element type by the data's dtype (``config.model.input_dtype``).
ONNX_TYPES = {"uint8": "UINT8", "uint16": "UINT16", "int16": "INT16", "float32": "FLOAT"}


def build_model(
    model: UNet, variables: Any, *, upconv: str = "conv_transpose", input_dtype: str = "uint8"
) -> Any:
    """The ONNX model of ``model.apply(variables, images, train=False)``.

    Args:
      model: the UNet (any widths, BatchNorm on or off, any head, either upsample method,
        any dropout rate, float32 or bfloat16 compute) or a ResNetUNet (``onnx_resnet``).
      variables: ``{"params": ..., "batch_stats": ...}`` (no batch_stats without BatchNorm).
      upconv: how the 2x2 stride-2 up-convolutions are written, one of ``UPCONV_OPS``
        (see ``up_conv``).
      input_dtype: the images' dtype as stored (``config.model.input_dtype``).

    Returns:
      A checked ``onnx.ModelProto`` (opset 17), float32 weights.

    Raises:
      OnnxExportError: onnx is missing, or the variables do not fit the model.
    """
    if upconv not in UPCONV_OPS:
        raise OnnxExportError(f"upconv must be one of {UPCONV_OPS}, got {upconv!r}")
    onnx = require_onnx()
    helper, tensor = onnx.helper, onnx.TensorProto
    graph, p = Graph(onnx), Params(variables)

    bands = int(model.in_channels)
    x = graph.node("Transpose", [INPUT_NAME], perm=[0, 3, 1, 2])  # uint8: 4x less to move
    x = graph.node("Cast", [x], to=tensor.FLOAT)
    if model.clip_low is not None:  # the data's own rule: clip to the percentiles first
        low = np.asarray(model.clip_low, np.float32).reshape(1, bands, 1, 1)
        high = np.asarray(model.clip_high, np.float32).reshape(1, bands, 1, 1)
        x = graph.node("Max", [x, graph.const("clip_low", low)])
        x = graph.node("Min", [x, graph.const("clip_high", high)])
    # Exactly the model's float32 arithmetic: (x - mean * scale) / (std * scale).
    scale = np.float32(model.input_scale)
    mean = np.asarray(model.mean, np.float32) * scale
    std = np.asarray(model.std, np.float32) * scale
    x = graph.node("Sub", [x, graph.const("mean", mean.reshape(1, bands, 1, 1))])
    x = graph.node("Div", [x, graph.const("std", std.reshape(1, bands, 1, 1))])

    if getattr(model, "encoder", "unet") != "unet":
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
        [
            helper.make_tensor_value_info(
                INPUT_NAME,
                getattr(tensor, ONNX_TYPES[input_dtype]),
                ["batch", "height", "width", bands],
            )
        ],
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
    """The jax.export sidecar (``unet_jax.deploy.sidecar.run_sidecar``) plus an ``onnx`` entry.

    Args:
      run: the loaded run.
      proto: the written model.

    Returns:
      A JSON-serialisable dict.
    """
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
    proto = build_model(
        run.model, run.variables, input_dtype=run.config.model.get("input_dtype") or "uint8"
    )
    out = storage.path(out, what="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(proto.SerializeToString())
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(onnx_sidecar(run, proto), indent=2) + "\n")
    return out, side
