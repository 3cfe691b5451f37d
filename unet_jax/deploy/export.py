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

An input whose height or width is not a multiple of the size multiple is rejected by
``exported.call`` with a shape error (pad it first, as ``unet_jax.Segmenter`` does).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.deploy.options import (
    ExportOptions,
    OptionError,
    SegmenterOptions,
    add_arguments,
    from_flags,
    recipe_of,
    scale_for,
)
from unet_jax.errors import InferenceError
from unet_jax.model.unet import UNet
from unet_jax.run import info as run_info
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import DEFAULT_CHECKPOINT, LoadedRun, load_run
from unet_jax.run.workdir import Workdir

FORMAT = "unet_jax.export/1"
DEFAULT_PLATFORMS = ExportOptions.platforms


class ExportError(InferenceError, RuntimeError):
    """The model could not be exported or serialised; the message says why."""


def input_shape_spec(size_multiple: int) -> str:
    """The symbolic input shape, e.g. ``"b, 16*h, 16*w, 3"``."""
    return f"b, {size_multiple}*h, {size_multiple}*w, 3"


def export_model(
    model: UNet, variables: Any, *, platforms: Sequence[str] = DEFAULT_PLATFORMS
) -> jax.export.Exported:
    """Exports ``images -> logits`` with symbolic batch, height and width.

    Args:
      model: the UNet.
      variables: its variables (embedded as constants).
      platforms: lowering platforms, e.g. ("cpu", "cuda", "tpu").

    Returns:
      The ``jax.export.Exported``.
    """
    # The artefact runs on every platform it is lowered for, so it carries XLA's own
    # convolution, not a CPU-specific choice ("auto" resolves by the exporting process's
    # backend). conv_impl changes only the weight gradient: the forward is the same.
    model = model.clone(conv_impl="xla")

    def logits_fn(images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    shape = jax.export.symbolic_shape(input_shape_spec(model.size_multiple))
    try:
        return jax.export.export(jax.jit(logits_fn), platforms=tuple(platforms))(
            jax.ShapeDtypeStruct(shape, jnp.uint8)
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


def run_sidecar(run: LoadedRun, *, platforms: Sequence[str]) -> dict[str, Any]:
    """The sidecar of any artefact of ``run`` (jax.export here, ONNX in onnx_export).

    Args:
      run: the loaded run.
      platforms: what the artefact runs on (lowering platforms, or ["onnx"]).

    Returns:
      A JSON-serialisable dict (see the module docstring).
    """
    model = run.model
    m = model.size_multiple
    training_info = {}
    info_path = Workdir(run.workdir).run_info
    if info_path.is_file():
        try:
            training_info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError):
            training_info = {}
    num_classes = int(run.config.num_classes)
    classes = read_run_classes(run.workdir, num_classes=num_classes)
    return {
        "format": FORMAT,
        "class_names": list(classes.names),
        "num_classes": num_classes,
        "palette": classes.palette.tolist(),
        "label_format": classes.label_format,
        "ignore_label": IGNORE_LABEL,
        "input": {
            "dtype": "uint8",
            "shape": ["b", f"{m}*h", f"{m}*w", 3],
            "layout": "NHWC",
            "color": "RGB",
            "range": [0, 255],
            "size_multiple": m,
            "training_size": [int(v) for v in run.config.image_size],
        },
        "normalisation": {
            "done_by_model": True,
            "formula": "(x / 255 - mean) / std, per RGB channel",
            "mean": list(model.mean),
            "std": list(model.std),
            "note": "pass raw uint8 RGB in 0..255; do not normalise or scale",
        },
        "output": {
            "dtype": "float32",
            "shape": ["b", f"{m}*h", f"{m}*w", int(model.num_classes)],
            "kind": "logits",
            "activation": run.activation,
            "prediction": "argmax over the last axis"
            if model.num_classes > 1
            else "foreground (class 1) where the logit > 0, else background (class 0)",
        },
        "platforms": list(platforms),
        "inference": inference_record(run.config),
        "checkpoint": {"requested": run.checkpoint, "step": run.step},
        "workdir": str(run.workdir),
        "config": json.loads(run.config.to_json_best_effort()),
        "git_commit": run_info.git_commit(),
        "training_git_commit": training_info.get("git_commit"),
        "versions": {"jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib")},
    }


def inference_record(config: Any) -> dict[str, Any]:
    """The sidecar's ``inference``: the run's inference recipe, as exported.

    Args:
      config: the run's config (its recipe is ``config.inference``).

    Returns:
      The scale, TTA and BatchNorm adaptation of the recipe (fallbacks filled in), and
      what the artefact itself does of them.
    """
    recipe = recipe_of(config)
    segment = SegmenterOptions(
        **{k: v for k, v in recipe.items() if k in SegmenterOptions.FALLBACKS}
    ).resolved()
    return {
        "scale": scale_for(None, config),
        "tta_flip": segment.tta_flip,
        "tta_scales": list(segment.tta_scales),
        "adapt_bn": segment.adapt_bn,
        "adapt_momentum": segment.adapt_momentum,
        "note": "The artefact maps images to logits with the checkpoint's stored BatchNorm "
        "statistics: BatchNorm adaptation (adapt_bn) is not exportable, and test-time "
        "augmentation and scale are applied around it (predict and eval.py --onnx apply "
        "this recipe, except adapt_bn).",
    }


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
    exported = export_model(run.model, run.variables, platforms=platforms)
    blob = serialize(exported)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(sidecar(run, exported), indent=2) + "\n")
    return out, side


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 2 bad input, 4 bad checkpoint)."""
    parser = argparse.ArgumentParser(
        prog="python -m unet_jax.export",
        description="Serialise a trained model with jax.export or as ONNX (docs/EVALUATION.md, "
        "docs/ONNX.md).",
    )
    parser.add_argument("--workdir", required=True, help="training run directory")
    parser.add_argument(
        "--out", required=True, help="output file, e.g. model.jaxexport or model.onnx"
    )
    add_arguments(parser, ExportOptions)
    args = parser.parse_args(argv)
    from unet_jax import cli

    # Exceptions become the documented exit codes in unet_jax.cli (the table in README).
    return cli.run(lambda: _export_command(args))


def _export_command(args: argparse.Namespace) -> int:
    options = from_flags(ExportOptions, args)
    if options.int8:
        if options.format != "onnx":
            raise OptionError(f"--int8 needs --format onnx (got --format {options.format})")
        from unet_jax.deploy import onnx_int8

        artifact, side = onnx_int8.export_int8_run(
            args.workdir,
            args.out,
            calibration=options.calibration,
            checkpoint=options.checkpoint,
            prepare_fn=onnx_int8.repository_prepare_fn(),
            data_dir=options.data_dir,
        )
    elif options.format == "onnx":
        from unet_jax.deploy.onnx_export import export_onnx_run

        artifact, side = export_onnx_run(args.workdir, args.out, checkpoint=options.checkpoint)
    else:
        artifact, side = export_run(
            args.workdir, args.out, checkpoint=options.checkpoint, platforms=options.platforms
        )
    size = artifact.stat().st_size
    print(f"Exported {args.workdir} to {artifact} ({size / 1e6:.1f} MB) and {side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
