"""Opening a trained model to segment with: a run's workdir (JAX) or an exported ONNX file.

eval.py and predict open their model here, so both backends give the same
:class:`Segmenter` interface, the same classes and the same option defaults.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax

from unet_jax.data.classes import ClassSet
from unet_jax.deploy.options import ModelSource, OptionError, SegmenterOptions
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import load_config, load_run


@dataclasses.dataclass(frozen=True)
class Backend:
    """A model ready to segment, and what the outputs mean.

    Attributes:
      segmenter: segments images of any size.
      config: the run's config (an ONNX file's own copy when no workdir is given).
      classes: the classes the model predicts.
      checkpoint: ``{"requested": ..., "step": ...}`` of the weights.
      training_size: (height, width) the model was trained at.
      source: the workdir or the ONNX file, for messages and reports.
    """

    segmenter: Segmenter
    config: Any  # a ConfigDict, or the ONNX sidecar's dict: both have .get
    classes: ClassSet
    checkpoint: dict[str, Any]
    training_size: tuple[int, int]
    source: str


def open_backend(
    *,
    workdir: str | pathlib.Path | None = None,
    source: ModelSource | None = None,
    options: SegmenterOptions | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Backend:
    """Opens the run's checkpoint, or the ONNX file when ``source.onnx`` is given.

    Args:
      workdir: the training run; with ``source.onnx`` optional (then its config and classes
        are used, and the file must predict the run's classes).
      source: the checkpoint, or the ONNX file and its threads (any :class:`ModelSource`,
        e.g. the EvalOptions or PredictOptions of a command); None: the best checkpoint.
      options: how to segment; fields left None take the run's (``eval_batch_size``, the
        inference recipe ``config.inference``), see ``SegmenterOptions.for_config``. With
        an ONNX file the recipe's ``adapt_bn`` is left out (not exportable).
      devices: JAX devices to shard batches over (default: all local devices).

    Returns:
      The Backend.

    Raises:
      OptionError: neither a workdir nor an ONNX file, or an ONNX file of other classes.
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError,
        OnnxModelError: the run, checkpoint or file cannot be used.
    """
    options = options or SegmenterOptions()
    source = source or ModelSource()
    onnx = source.onnx
    if onnx is not None:
        from unet_jax.deploy.onnx_inference import load_onnx_model

        model = load_onnx_model(onnx, threads=source.onnx_threads)
        config, classes = model.config, model.classes
        if workdir is not None:
            config = load_config(workdir)
            classes = read_run_classes(workdir, num_classes=int(config.num_classes))
            if model.class_names != classes.names:
                raise OptionError(
                    f"{onnx} predicts classes {list(model.class_names)}, but {workdir} has "
                    f"{list(classes.names)}"
                )
        if options.adapt_bn is None:
            # A recipe's BatchNorm adaptation needs the checkpoint: an exported model
            # carries the stored statistics (asked for explicitly, it is an error).
            options = dataclasses.replace(options, adapt_bn="off")
        return Backend(
            segmenter=model.segmenter(options=options.for_config(config)),
            config=config,
            classes=classes,
            checkpoint=model.checkpoint,
            training_size=tuple(int(v) for v in model.training_size),
            source=str(onnx),
        )
    if workdir is None:
        raise OptionError("a workdir (JAX backend) or an ONNX file is needed")
    run = load_run(workdir, checkpoint=source.checkpoint)
    return Backend(
        segmenter=Segmenter.from_run(run, options, devices=devices or jax.local_devices()),
        config=run.config,
        classes=read_run_classes(run.workdir, num_classes=int(run.config.num_classes)),
        checkpoint={"requested": run.checkpoint, "step": run.step},
        training_size=tuple(int(v) for v in run.config.image_size),
        source=str(workdir),
    )
