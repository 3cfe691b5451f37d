"""Serialises a trained model with ``jax.export``: one file, loadable without unet_jax.

``python -m unet_jax.export --workdir DIR --out model.jaxexport [--checkpoint best]``
writes

- ``model.jaxexport``: the inference function ``images -> logits`` with the weights
  embedded as constants, lowered for CPU and CUDA by default, with a symbolic batch size
  and symbolic height/width constrained to multiples of the model's size multiple
  (input shape ``(b, 16*h, 16*w, 3)`` for the 4-level U-Net);
- ``model.jaxexport.json``: a sidecar with everything a consumer needs: class names,
  palette, normalisation, input/output dtypes and shapes, the output activation, the
  training configuration, the checkpoint step and the git commits.

Loading needs only jax (and the ``flatbuffers`` package that jax's serialisation uses)::

    import jax, numpy as np
    exported = jax.export.deserialize(open("model.jaxexport", "rb").read())
    logits = exported.call(images)  # uint8 [B, H, W, 3] RGB 0..255 -> float32 logits
    # (other images: [B, H, W, bands] of their dtype as stored; the sidecar's "input")

An input whose height or width is not a multiple of the size multiple is rejected by
``exported.call`` with a shape error (pad it first, as ``unet_jax.Segmenter`` does).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from unet_jax import launch, storage
from unet_jax.data import sources as data_sources
from unet_jax.deploy import command_line
from unet_jax.deploy.options import ExportOptions, OptionError
from unet_jax.deploy.sidecar import run_sidecar
from unet_jax.errors import InferenceError
from unet_jax.model.unet import UNet
from unet_jax.run.loading import DEFAULT_CHECKPOINT, LoadedRun, load_run

DEFAULT_PLATFORMS = ExportOptions.platforms


class ExportError(InferenceError, RuntimeError):
    """The model could not be exported or serialised; the message says why."""


def input_shape_spec(size_multiple: int, bands: int = 3) -> str:
    """The symbolic input shape, e.g. ``"b, 16*h, 16*w, 3"``."""
    return f"b, {size_multiple}*h, {size_multiple}*w, {bands}"


def export_model(
    model: UNet,
    variables: Any,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    input_dtype: str = "uint8",
) -> jax.export.Exported:
    """Exports ``images -> logits`` with symbolic batch, height and width.

    Args:
      model: the UNet.
      variables: its variables (embedded as constants).
      platforms: lowering platforms, e.g. ("cpu", "cuda", "tpu").
      input_dtype: the images' dtype as the data stores them (``config.model.input_dtype``).

    Returns:
      The ``jax.export.Exported``.
    """
    # The artefact runs on every platform it is lowered for, so it carries XLA's own
    # convolution, not a CPU-specific choice ("auto" resolves by the exporting process's
    # backend). conv_impl changes only the weight gradient: the forward is the same.
    model = model.clone(conv_impl="xla")

    def logits_fn(images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    shape = jax.export.symbolic_shape(input_shape_spec(model.size_multiple, model.in_channels))
    try:
        return jax.export.export(jax.jit(logits_fn), platforms=tuple(platforms))(
            jax.ShapeDtypeStruct(shape, jnp.dtype(input_dtype))
        )
    except ValueError as e:
        raise ExportError(f"jax.export failed for platforms {tuple(platforms)}: {e}") from e


def serialize(exported: jax.export.Exported) -> bytes:
    """``exported.serialize()``, with a clear error when ``flatbuffers`` is missing."""
    if importlib.util.find_spec("flatbuffers") is None:
        raise ExportError(
            "jax.export serialisation needs the 'flatbuffers' package: pip install flatbuffers"
        )
    return bytes(exported.serialize())


def sidecar(run: LoadedRun, exported: jax.export.Exported) -> dict[str, Any]:
    """The JSON description of an exported model.

    Args:
      run: the loaded run.
      exported: the exported function.

    Returns:
      A JSON-serialisable dict (see the module docstring).
    """
    return run_sidecar(run, platforms=list(exported.platforms))


def export_run(
    workdir: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    checkpoint: str | int = DEFAULT_CHECKPOINT,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Exports a run's checkpoint to ``out`` and its sidecar to ``out + ".json"``.

    Args:
      workdir: the training run directory.
      out: the artifact's path (conventionally ``*.jaxexport``).
      checkpoint: "best", "latest" or a step number.
      platforms: lowering platforms.

    Returns:
      (artifact path, sidecar path).

    Raises:
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: see
        ``unet_jax.run.loading.load_run``.
      ExportError: lowering or serialisation failed.
    """
    platforms = tuple(p.strip().lower() for p in platforms if p.strip())
    if not platforms:
        raise OptionError("platforms must name at least one platform (cpu, cuda, rocm, tpu)")
    run = load_run(workdir, checkpoint=checkpoint)
    exported = export_model(
        run.model,
        run.variables,
        platforms=platforms,
        input_dtype=run.config.model.get("input_dtype") or "uint8",
    )
    blob = serialize(exported)
    out = storage.path(out, what="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(sidecar(run, exported), indent=2) + "\n")
    return out, side


def main(
    argv: Sequence[str] | None = None, *, prepare_fn: data_sources.PrepareFn | None = None
) -> int:
    """The command line; returns the exit status (0 ok, 2 bad input, 4 bad checkpoint).

    Args:
      argv: the arguments (None: ``sys.argv[1:]``).
      prepare_fn: the data set builders, for ``--int8`` calibration (the command passes
        the repository's ``datasets.prepare_dataset``).
    """
    return command_line.run_command(_parser(), argv, lambda args: _export_command(args, prepare_fn))


def _parser() -> argparse.ArgumentParser:
    return command_line.command_parser(
        ExportOptions,
        prog="python -m unet_jax.export",
        description="Serialise a trained model with jax.export or as ONNX (docs/EVALUATION.md, "
        "docs/ONNX.md).",
        out_help="Output file, e.g. model.jaxexport or model.onnx.",
    )


def _export_command(args: argparse.Namespace, prepare_fn: data_sources.PrepareFn | None) -> int:
    if launch.leave_to_process_zero("export", os.environ):
        return 0
    options = command_line.from_flags(ExportOptions, args)
    if options.int8:
        if options.format != "onnx":
            raise OptionError(f"--int8 needs --format onnx (got --format {options.format})")
        from unet_jax.deploy import onnx_int8

        artifact, side = onnx_int8.export_int8_run(
            args.workdir,
            args.out,
            calibration=options.calibration,
            checkpoint=options.checkpoint,
            prepare_fn=prepare_fn,
            data_dir=options.data_dir,
        )
    elif options.format == "onnx":
        from unet_jax.deploy.onnx_export import export_onnx_run

        artifact, side = export_onnx_run(args.workdir, args.out, checkpoint=options.checkpoint)
    else:
        artifact, side = export_run(
            args.workdir, args.out, checkpoint=options.checkpoint, platforms=options.platforms
        )
    size = storage.file_size(artifact)
    print(f"Exported {args.workdir} to {artifact} ({size / 1e6:.1f} MB) and {side}")
    return 0
