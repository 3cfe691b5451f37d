"""int8 ONNX: the exported U-Net statically quantised with ONNX Runtime's tools.

``python -m unet_jax.export --workdir DIR --format onnx --int8 --calibration K --out m.onnx``
writes ``m.onnx`` (QDQ format: uint8 activations, int8 per-channel weights) and its sidecar
``m.onnx.json``, the float model's sidecar plus a ``quantization`` entry (format, types,
calibration count, split and data set). The model keeps the float model's interface
(uint8 RGB NHWC in, float32 logits out), so ``predict --onnx`` and ``eval.py
--onnx`` take it like any exported model.

Calibration: K images of the run's own training split, read by the training input
pipeline (``unet_jax.data.pipeline.create_train_loader``: the run's seed and shuffle, its input
mode and resize filter, augmentation off), so they are exactly what the model saw in
training, minus the random augmentation: uint8 RGB at ``config.image_size`` (resized, or
crops at native scale for crop-trained runs). Activation ranges are the MinMax over them.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import tempfile
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np

from unet_jax import storage
from unet_jax.data import pipeline as input_pipeline
from unet_jax.data import sources as data_sources
from unet_jax.deploy.onnx_export import (
    INPUT_NAME,
    OnnxExportError,
    build_model,
    onnx_sidecar,
    require_onnx,
)
from unet_jax.deploy.options import OptionError
from unet_jax.errors import InferenceError, import_optional
from unet_jax.run.loading import DEFAULT_CHECKPOINT, load_run

CALIBRATION_SPLIT = "train"
DEFAULT_CALIBRATION = 32
UPCONV = "depth_to_space"


class CalibrationDataError(InferenceError, FileNotFoundError):
    """The run's training data cannot be opened for calibration; the message says why."""


def require_quantization() -> Any:
    """Imports ``onnxruntime.quantization``, or raises OnnxExportError with the install line."""
    return import_optional(
        "onnxruntime.quantization",
        OnnxExportError,
        "int8 export needs the optional 'onnxruntime' package: pip install -e '.[onnx]'",
    )


def open_calibration_source(
    config: ml_collections.ConfigDict,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    data_dir: str | None = None,
) -> tuple[Any, str]:
    """The training split of the run's data set, as the run opened it.

    Args:
      config: the run's configuration (``dataset``, ``data_dir``, ``manual_dir``...).
      prepare_fn: opens (and prepares when needed) the data set (``datasets.prepare_dataset``).
      data_dir: the TFDS data directory to use instead of the run's ``data_dir``.

    Returns:
      (the training source, the data set's name as the run's config gives it).

    Raises:
      CalibrationDataError: no way to open the data set, or it cannot be opened or
        prepared (one line naming the data set and what to do).
    """
    config = ml_collections.ConfigDict(config.to_dict())
    if data_dir is not None:
        config.data_dir = data_dir
    where = f"{config.dataset} (data_dir {config.data_dir or 'the TFDS default'})"
    advice = (
        "prepare it (python train.py with the run's config prepares it), or pass --data_dir "
        "where it is prepared"
    )
    if prepare_fn is None:
        raise CalibrationDataError(
            f"int8 calibration reads the run's training data {where}, but the data set "
            "builders (the repository's datasets/ folder) cannot be imported; run the export "
            "from a source checkout"
        )
    try:
        dataset = data_sources.open_dataset(
            config, splits=(CALIBRATION_SPLIT,), prepare_fn=prepare_fn
        )
    except (OSError, ValueError) as e:  # builders' DataError, NotPreparedError, missing files
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CalibrationDataError(
            f"int8 calibration reads the run's training data {where}, which cannot be opened "
            f"({reason}); {advice}"
        ) from e
    source = dataset.sources[CALIBRATION_SPLIT]
    if len(source) == 0:
        raise CalibrationDataError(f"the training split of {where} is empty: nothing to calibrate")
    return source, str(config.dataset)


def calibration_images(
    source: Any, config: ml_collections.ConfigDict, *, count: int
) -> Iterable[np.ndarray]:
    """The first ``count`` training examples as the training pipeline makes them, unaugmented.

    Args:
      source: the training split.
      config: the run's configuration (image_size, input_mode, augment.resize_method, seed).
      count: how many images (>= 1; at most the split's size: each example once).

    Returns:
      [1, H, W, bands] batches of the data's dtype (uint8 RGB for 8-bit RGB), one image
      each, H x W = ``config.image_size``.
    """
    count = min(count, len(source))
    augment = dict(config.augment.to_dict()) if config.get("augment") else {}
    augment.update(enabled=False, input_mode=config.get("input_mode", "resize"))
    loader = input_pipeline.create_train_loader(
        source,
        global_batch_size=1,
        image_size=tuple(int(v) for v in config.image_size),
        seed=int(config.seed),
        augment=augment,
    )
    return (batch["image"] for batch in itertools.islice(iter(loader), count))


class _Reader:
    """A ``CalibrationDataReader`` over image batches (ORT's reader is a protocol:
    anything with ``get_next``)."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str) -> None:
        self._batches = iter(batches)
        self._input_name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.count += int(batch.shape[0])
        return {self._input_name: np.ascontiguousarray(batch)}  # the data's dtype


def logits_convolution(float_proto: Any) -> str:
    """The name of the Conv node whose output the graph's logits are (the 1x1 head).

    Args:
      float_proto: the float32 ``onnx.ModelProto``.

    Returns:
      The node's name.
    """
    producers = {out: node for node in float_proto.graph.node for out in node.output}
    node = producers[float_proto.graph.output[0].name]
    while node.op_type != "Conv":  # the NCHW -> NHWC Transpose after the head
        node = producers[node.input[0]]
    return node.name


def quantization_settings(float_proto: Any) -> dict[str, Any]:
    """The ``quantize_static`` arguments (besides the files and the data) of every export.

    Args:
      float_proto: the float32 model to quantise.

    Returns:
      Keyword arguments of ``quantize_static``.
    """
    q = require_quantization()
    return dict(
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        reduce_range=False,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        # The calibration graph reduces every tensor to its min and max in ORT, so only
        # two numbers per tensor and image are kept (no CalibMaxIntermediateOutputs: ORT
        # 1.32 drops what it collected when that limit is reached).
        calibrate_method=q.CalibrationMethod.MinMax,
        # The head stays float32: quantised logits are rounded to 256 levels over their
        # calibration range, so close classes tie (argmax then takes the lower index) and
        # logits beyond the range are clipped. A 1x1 convolution to the classes is a tiny
        # share of the FLOPs; its input is still the int8 kernels' output.
        nodes_to_exclude=[logits_convolution(float_proto)],
    )


def quantize_model(
    float_proto: Any,
    out: str | pathlib.Path,
    batches: Iterable[np.ndarray],
    *,
    settings: dict[str, Any] | None = None,
) -> int:
    """Writes the statically quantised ``float_proto`` to ``out``.

    Args:
      float_proto: the float32 ``onnx.ModelProto`` (``onnx_export.build_model``).
      out: the int8 model's path.
      batches: calibration batches, uint8 [B, H, W, 3].
      settings: ``quantize_static`` arguments; None: ``quantization_settings(float_proto)``
        (the benchmarks try others).

    Returns:
      The number of calibration images used.
    """
    q = require_quantization()
    reader = _Reader(batches, INPUT_NAME)
    with tempfile.TemporaryDirectory(prefix="unet_jax_int8_") as tmp:
        source = pathlib.Path(tmp) / "float32.onnx"
        source.write_bytes(float_proto.SerializeToString())
        settings = settings or quantization_settings(float_proto)
        q.quantize_static(str(source), str(out), reader, **settings)
    return reader.count


def quantization_sidecar(*, count: int, requested: int, dataset: str) -> dict[str, Any]:
    """The sidecar's ``quantization`` entry.

    Args:
      count: calibration images used.
      requested: calibration images asked for (more than the split holds: all of it).
      dataset: the data set the images came from.

    Returns:
      A JSON-serialisable dict.
    """
    return {
        "dtype": "int8",
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "activations": "uint8, per tensor",
        "weights": "int8, per output channel",
        "float32_nodes": "the 1x1 head (logits are not quantised)",
        "reduce_range": False,
        "calibration": {
            "method": "MinMax",
            "count": count,
            "requested": requested,
            "split": CALIBRATION_SPLIT,
            "dataset": dataset,
            "preprocessing": "the training input pipeline without augmentation (uint8 RGB at "
            "the training size, the model's ONNX input)",
        },
    }


def export_int8_run(
    workdir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    calibration: int = DEFAULT_CALIBRATION,
    checkpoint: str | int = DEFAULT_CHECKPOINT,
    prepare_fn: data_sources.PrepareFn | None = None,
    data_dir: str | None = None,
    sources: dict[str, Any] | None = None,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes a run's checkpoint as an int8 ONNX model and its sidecar (``out + ".json"``).

    Args:
      workdir: the training run directory.
      out: the model's path.
      calibration: training images to calibrate on (>= 1).
      checkpoint: "best", "latest" or a step number.
      prepare_fn: opens the run's data set (see ``open_calibration_source``).
      data_dir: the TFDS data directory instead of the run's.
      sources: ``{"train": source}`` to calibrate on instead of the run's data set (tests).

    Returns:
      (model path, sidecar path).

    Raises:
      OptionError: ``calibration`` < 1.
      CalibrationDataError: the training data cannot be opened.
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError,
        OnnxExportError: as ``onnx_export.export_onnx_run``.
    """
    if calibration < 1:
        raise OptionError(f"--calibration must be >= 1 training images, got {calibration}")
    require_onnx()
    require_quantization()
    run = load_run(workdir, checkpoint=checkpoint)
    if sources is not None:
        source, dataset = sources[CALIBRATION_SPLIT], "(in-memory sources)"
    else:
        source, dataset = open_calibration_source(
            run.config, prepare_fn=prepare_fn, data_dir=data_dir
        )
    # The up-convolution as Conv + DepthToSpace: quantised to ORT's int8 convolution (a
    # ConvTranspose stays float32 between conversions; docs/ONNX.md, "int8").
    proto = build_model(
        run.model,
        run.variables,
        upconv=UPCONV,
        input_dtype=run.config.model.get("input_dtype") or "uint8",
    )
    out = storage.path(out, what="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    images = calibration_images(source, run.config, count=calibration)
    with tempfile.TemporaryDirectory() as tmp:
        # ONNX Runtime writes local files only: a bucket's model is copied there after.
        written = pathlib.Path(tmp) / out.name if storage.is_url(out) else out
        count = quantize_model(proto, written, images)
        if written is not out:
            storage.upload(written, out)
    side = onnx_sidecar(run, proto)
    side["onnx"]["weights_dtype"] = "int8"
    side["onnx"]["up_convolution"] = "1x1 Conv + DepthToSpace"
    side["quantization"] = quantization_sidecar(count=count, requested=calibration, dataset=dataset)
    side_path = out.with_name(out.name + ".json")
    side_path.write_text(json.dumps(side, indent=2) + "\n")
    return out, side_path
