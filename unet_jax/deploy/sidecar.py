"""The JSON sidecar written beside every exported model (jax.export, ONNX, int8 ONNX).

Its fields are described in ``unet_jax.deploy.export``'s docstring and docs/EVALUATION.md.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from typing import Any

import jax

from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.data.image_files import is_rgb8
from unet_jax.deploy.options import SegmenterOptions, recipe_of, scale_for
from unet_jax.run import info as run_info
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import LoadedRun
from unet_jax.run.workdir import Workdir

FORMAT = "unet_jax.export/1"


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
        "input": input_record(run),
        "normalisation": normalisation_record(model),
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


def input_record(run: LoadedRun) -> dict[str, Any]:
    """The sidecar's ``input``: dtype, shape and kind of the images the model takes."""
    m = run.model.size_multiple
    dtype = run.config.model.get("input_dtype") or "uint8"
    bands = int(run.model.in_channels)
    record = {
        "dtype": dtype,
        "shape": ["b", f"{m}*h", f"{m}*w", bands],
        "layout": "NHWC",
        "color": "RGB" if is_rgb8(bands, dtype) else f"{bands} band(s) as stored",
        "size_multiple": m,
        "training_size": [int(v) for v in run.config.image_size],
    }
    if is_rgb8(bands, dtype):
        record["range"] = [0, 255]
    return record


def normalisation_record(model: Any) -> dict[str, Any]:
    """The sidecar's ``normalisation`` (done by the model, recorded for consumers)."""
    if model.clip_low is None:
        return {
            "done_by_model": True,
            "rule": "imagenet",
            "formula": "(x / 255 - mean) / std, per RGB channel",
            "mean": list(model.mean),
            "std": list(model.std),
            "note": "pass raw uint8 RGB in 0..255; do not normalise or scale",
        }
    return {
        "done_by_model": True,
        "rule": "zscore",
        "formula": "(clip(x, low, high) - mean) / std, per band (training split's statistics)",
        "low": list(model.clip_low),
        "high": list(model.clip_high),
        "mean": list(model.mean),
        "std": list(model.std),
        "note": "pass the bands as stored (their dtype); do not normalise or scale",
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
        "band": list(recipe["band"]) if "band" in recipe else None,
        "note": "The artefact maps images to logits with the checkpoint's stored BatchNorm "
        "statistics: BatchNorm adaptation (adapt_bn) is not exportable, and test-time "
        "augmentation and scale are applied around it (predict and eval.py --onnx apply "
        "this recipe, except adapt_bn).",
    }
