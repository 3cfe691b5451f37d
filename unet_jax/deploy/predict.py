"""Segments image files: ``python -m unet_jax.predict --workdir DIR INPUTS... --out OUT``.

INPUTS are files, glob patterns and folders (searched recursively for .png, .jpg, .jpeg,
.bmp, .tif, .tiff, .webp, .ppm). For every image it writes, mirroring the input's path
relative to its folder (or its bare file name):

- ``OUT/labels/<name>.png``: the class ids in the training data set's own mask format
  (``ClassSet.label_format``): for Lyft-Udacity an RGB PNG with the id in the RED channel
  (CameraSeg), for a folder data set its class colours, its ids, or 0/255 for binary masks;
- ``OUT/overlays/<name>.png``: the image blended 50/50 with the class colours;
- ``OUT/probabilities/<name>.npy`` (``--probabilities``): float16 [H, W, C] per-class
  probabilities, whose argmax is the label;
- ``OUT/predictions.json``: the checkpoint, options and one record per image.

Scale (``--scale``). By default images are segmented at the scale the model was trained
at (``options.trained_scale``): ``native`` for runs trained on crops
(``config.input_mode="crop"``), else ``resize``. ``resize``: the image is resized
(bilinear) to the training size ``config.image_size``, segmented there, and the
prediction (and probabilities) resized back to the image's own size with nearest-neighbour
sampling, so every output pixel holds one of the predicted classes. ``native``: the image
is segmented at its own size, whole (padded) or in blended tiles when large, by the rules
of ``unet_jax.deploy.segmenter`` (right for images already at the training data's scale,
e.g. the 800x600 frames of the full data set).

Band (``--band``, default the run's recipe ``config.inference.band``): at the ``resize``
scale, the rows of the band are segmented again at native scale and replace those rows
(``unet_jax.deploy.banded``): small, far objects at the resolution they have, the rest as
trained. ``--band=off`` turns a stored band off.

Input rules (``unet_jax.data.image_files``): an image is read as stored, with its bands
and dtype (8-bit RGB, grey, 16-bit, multi-band TIFF or .npy), and must match the model's
(8-bit grey is repeated to RGB for an 8-bit RGB model; palettes are expanded; EXIF
orientation applied; a fully opaque alpha dropped). Rejected with an :class:`ImageError`
naming the file: unreadable or truncated files, transparent pixels, other bands or dtype
than the model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import glob
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from unet_jax import launch, storage
from unet_jax.data import display, image_files, image_ops
from unet_jax.data.classes import ClassSet
from unet_jax.data.image_files import ImageFileError as ImageError
from unet_jax.data.image_files import decode_image as decode_image  # public, as before
from unet_jax.data.image_files import read_image
from unet_jax.deploy import banded, command_line
from unet_jax.deploy import options as option_flags
from unet_jax.deploy.options import OptionError, PredictOptions
from unet_jax.errors import InferenceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
OVERLAY_ALPHA = 0.5
_GLOB_CHARS = "*?["


class InputError(InferenceError, FileNotFoundError):
    """An input path or pattern that names no image."""


# ----------------------------------------------------------------------------
# Inputs and outputs.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputImage:
    """One image to segment: its path and the relative name its outputs get."""

    path: pathlib.Path
    name: pathlib.PurePath  # relative, without suffix


def _is_image(path: pathlib.Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _files_below(folder: storage.AnyPath) -> list[storage.AnyPath]:
    """Every file below ``folder`` (epath has no recursive glob on Cloud Storage)."""
    if not storage.is_url(folder):
        return list(folder.rglob("*"))
    return [f for p in folder.iterdir() for f in (_files_below(p) if p.is_dir() else [p])]


def _bucket_matches(pattern: str) -> list[InputImage]:
    """The images a pattern in a bucket matches (``gs://b/images/*.png``; no ``**``)."""
    if "**" in pattern:
        raise InputError(f"pattern {pattern!r}: ** is not supported in a bucket; pass the folder")
    first_glob = min(pattern.index(c) for c in _GLOB_CHARS if c in pattern)
    base = pattern[: pattern.rindex("/", 0, first_glob)]
    matches = storage.path(base, what="input").glob(pattern[len(base) + 1 :])
    images = sorted(p for p in matches if _is_image(p))
    if not images:
        raise InputError(f"pattern {pattern!r} matches no image file")
    return [InputImage(p, pathlib.PurePath(p.stem)) for p in images]


def _save_png(array: np.ndarray, path: storage.AnyPath) -> None:
    """Writes a PNG through a file object, so that a bucket path is written in the bucket."""
    with path.open("wb") as f:
        Image.fromarray(array).save(f, format="PNG", compress_level=1)


def expand_inputs(inputs: Sequence[str | pathlib.Path]) -> list[InputImage]:
    """Expands files, glob patterns and folders into a sorted list of images.

    A folder contributes its images recursively, named by their path relative to it; a
    file or a glob match is named by its file name.

    Args:
      inputs: paths or patterns.

    Returns:
      The images, each once.

    Raises:
      InputError: an input matches nothing, or two inputs would write the same outputs.
    """
    found: list[InputImage] = []
    for item in inputs:
        text = str(item)
        path = storage.path(text, what="input")
        if storage.is_url(path) and any(c in text for c in _GLOB_CHARS):
            found += _bucket_matches(text)
        elif path.is_dir():
            images = sorted(p for p in _files_below(path) if _is_image(p))
            if not images:
                raise InputError(f"folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            found += [InputImage(p, p.relative_to(path).with_suffix("")) for p in images]
        elif path.is_file():
            found.append(InputImage(path, pathlib.PurePath(path.stem)))
        elif any(c in text for c in _GLOB_CHARS):
            matches = sorted(pathlib.Path(p) for p in glob.glob(text, recursive=True))
            images = [p for p in matches if _is_image(p)]
            if not images:
                raise InputError(f"pattern {text!r} matches no image file")
            found += [InputImage(p, pathlib.PurePath(p.stem)) for p in images]
        else:
            raise InputError(f"input {text} does not exist")
    unique: dict[pathlib.Path, InputImage] = {}
    names: dict[pathlib.PurePath, pathlib.Path] = {}
    for image in found:
        key = image.path if storage.is_url(image.path) else image.path.resolve()
        if key in unique:
            continue
        if image.name in names:
            raise InputError(
                f"{image.path} and {names[image.name]} would both be written as "
                f"{image.name}.png; pass their folder instead, or rename one"
            )
        unique[key] = image
        names[image.name] = image.path
    return list(unique.values())


def read_model_input(path: pathlib.Path, *, config: Any) -> np.ndarray:
    """An image file as the run's model takes it: its bands and dtype (8-bit grey repeated
    to RGB for an 8-bit RGB model, as before).

    Raises:
      ImageError: unreadable, or other bands or dtype than the model's (naming both).
    """
    m = config.get("model") or {}  # a ConfigDict, or an ONNX sidecar's dict
    return image_files.conform(
        read_image(path),
        bands=int(m.get("in_channels") or 3),
        dtype=m.get("input_dtype") or "uint8",
        name=str(path),
    )


def overlay(
    image: np.ndarray, label: np.ndarray, classes: ClassSet, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """The image blended with the colour of each pixel's class.

    Args:
      image: uint8 [H, W, 3].
      label: [H, W] class ids.
      classes: the run's classes (colours).
      alpha: weight of the class colours.

    Returns:
      uint8 [H, W, 3] = round((1 - alpha) * image + alpha * colour).
    """
    colors = classes.colorize(label).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Prediction.
# ----------------------------------------------------------------------------


def predict_files(
    workdir: str | pathlib.Path | None,
    inputs: Sequence[str | pathlib.Path],
    out: str | pathlib.Path,
    options: PredictOptions | None = None,
    *,
    skip_bad: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Segments image files with a trained run and writes labels, overlays, probabilities.

    Args:
      workdir: the training run directory (None with ``onnx``).
      inputs: files, glob patterns and folders.
      out: output directory.
      options: the checkpoint (or ONNX model), scale, probabilities, TTA, batch size and
        tiling (:class:`PredictOptions`; its defaults when None).
      skip_bad: report unreadable images in ``"errors"`` and go on, instead of raising.
      **overrides: options by name, replacing those of ``options``
        (``predict_files(w, inputs, out, scale="native", tta_flip=True)``).

    Returns:
      The content of ``predictions.json``: ``checkpoint``, ``options``, ``images`` (one
      record per written image) and ``errors`` (messages of skipped images).

    Raises:
      InputError: an input names no image.
      ImageError: an image cannot be used (unless ``skip_bad``).
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: see
        ``unet_jax.run.loading.load_run``.
    """
    import tqdm

    from unet_jax.deploy.backend import open_backend

    options = option_flags.override(options or PredictOptions(), **overrides)
    probabilities = options.probabilities
    images = expand_inputs(inputs)
    backend = open_backend(workdir=workdir, source=options, options=options.segment)
    config, segmenter, classes = backend.config, backend.segmenter, backend.classes
    train_h, train_w = backend.training_size
    checkpoint_info = backend.checkpoint
    scale = option_flags.scale_for(options.scale, config)
    native = scale == "native"
    band = option_flags.band_for(options.band, config, scale=scale)
    out = storage.path(out, what="--out")
    out.mkdir(parents=True, exist_ok=True)  # its folders come with their first file
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    read = functools.partial(read_model_input, config=config)
    model_size = None if native else (train_h, train_w)
    if segmenter.options.adapt_bn == "set":
        segmenter = _adapted_to_inputs(
            segmenter, images, native, (train_h, train_w), options, read=read
        )
    bar = tqdm.tqdm(total=len(images), unit="img", disable=not options.progress, desc="predict")
    loaded = _readable(
        images, read=read, model_size=model_size, skip_bad=skip_bad, errors=errors, bar=bar
    )
    for group in image_ops.same_size_batches(
        loaded, batch_size=segmenter.batch_size, shape_of=lambda x: x[2].shape
    ):
        batch = np.stack([x[2] for x in group])
        labels, probs = segmenter.predict(batch, with_probabilities=probabilities)
        tiled = native and segmenter.is_tiled(*batch.shape[1:3])
        bands = band and banded.segment_bands(
            segmenter, [x[1] for x in group], band=band, with_probabilities=probabilities
        )
        records += _write_group(
            out,
            group,
            labels=labels,
            probs=probs if probabilities else None,
            bands=bands,
            classes=classes,
            display_bands=config.get("display_bands"),
            scale=scale,
            tiled=tiled,
        )
        bar.update(len(group))
    bar.close()
    result = {
        "workdir": None if workdir is None else str(workdir),
        "onnx": options.onnx,
        "checkpoint": checkpoint_info,
        "options": {
            "scale": scale,
            "band": list(band) if band else None,
            "training_size": [train_h, train_w],
            **dataclasses.asdict(segmenter.options),
            "batch_size": segmenter.batch_size,
            "probabilities": probabilities,
        },
        "class_names": list(classes.names),
        "label_format": classes.label_format,
        "images": records,
        "errors": errors,
    }
    (out / "predictions.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _write_group(
    out: pathlib.Path,
    group: Sequence[tuple[InputImage, np.ndarray, np.ndarray]],
    *,
    labels: np.ndarray,
    probs: np.ndarray | None,
    bands: Sequence[Any] | None,
    classes: ClassSet,
    display_bands: Sequence[int] | None,
    scale: str,
    tiled: bool,
) -> list[dict[str, Any]]:
    """Writes the outputs of one batch at each image's size; returns their records.

    Args:
      out: the output directory.
      group: ``(item, image, model_input)`` of each image of the batch.
      labels: [B, h, w] class ids at the model's size.
      probs: [B, h, w, C] probabilities at the model's size, or None.
      bands: each image's band segmentation (``banded.segment_bands``), or None.
      classes: the run's classes.
      display_bands: ``config.display_bands`` (how overlays show the images).
      scale: "resize" or "native", for the records.
      tiled: whether the batch was tiled, for the records.

    Returns:
      One ``predictions.json`` record per image.
    """
    records = []
    for k, (item, image, _) in enumerate(group):
        h, w = image.shape[:2]
        label = image_ops.resize_nearest(labels[k], h, w)
        image_probs = None if probs is None else image_ops.resize_nearest(probs[k], h, w)
        if bands:
            label = banded.paste(label, bands[k], part=1)
            if image_probs is not None:
                image_probs = banded.paste(image_probs, bands[k], part=2)
        written = _write_outputs(
            out,
            item,
            picture=display.to_rgb(image, bands=display_bands),
            label=label,
            probabilities=image_probs,
            classes=classes,
        )
        record = {"input": str(item.path), "height": h, "width": w, "scale": scale}
        band_rows = list(bands[k][0]) if bands else None
        records.append({**record, "tiled": tiled, "band_rows": band_rows, **written})
    return records


def _readable(
    images: Sequence[InputImage],
    *,
    read: Callable[[pathlib.Path], np.ndarray],
    model_size: tuple[int, int] | None,
    skip_bad: bool,
    errors: list[str],
    bar: Any,
) -> Iterator[tuple[InputImage, np.ndarray, np.ndarray]]:
    """The images read (in a background thread), each with the model's input.

    Args:
      images: the inputs.
      read: a path -> the image as the model takes it (``read_model_input``).
      model_size: (H, W) the model sees the images resized to; None: native scale.
      skip_bad: report an unreadable image in ``errors`` (and count it on ``bar``) and go
        on, instead of raising its ImageError.
      errors: the skipped images' messages (appended to).
      bar: the progress bar.

    Yields:
      ``(item, image, model_input)``.
    """

    def load(item: InputImage) -> tuple[InputImage, np.ndarray | None, np.ndarray | None]:
        try:
            image = read(item.path)
        except ImageError as e:
            if not skip_bad:
                raise
            errors.append(str(e))
            return item, None, None
        model_input = image if model_size is None else image_ops.resize_image(image, *model_size)
        return item, image, model_input

    for item in image_ops.prefetch_map(load, images):
        if item[1] is None:
            bar.update(1)  # skipped; its error is in `errors`
        else:
            yield item


def _write_outputs(
    out: pathlib.Path,
    item: InputImage,
    *,
    picture: np.ndarray,
    label: np.ndarray,
    probabilities: np.ndarray | None,
    classes: ClassSet,
) -> dict[str, str]:
    """Writes one image's label, overlay and (when given) probabilities under ``out``.

    Args:
      out: the output directory.
      item: the input (its relative name names the outputs).
      picture: uint8 [H, W, 3], the image as shown (``display.to_rgb``), for the overlay.
      label: [H, W] class ids at the image's size.
      probabilities: [H, W, C] at the image's size (written as float16 .npy), or None.
      classes: the run's classes (label format, colours).

    Returns:
      {"label": path, "overlay": path[, "probabilities": path]}.
    """
    paths = {
        "label": out / "labels" / f"{item.name}.png",
        "overlay": out / "overlays" / f"{item.name}.png",
    }
    if probabilities is not None:
        paths["probabilities"] = out / "probabilities" / f"{item.name}.npy"
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    _save_png(classes.label_image(label), paths["label"])
    _save_png(overlay(picture, label, classes), paths["overlay"])
    if probabilities is not None:
        with paths["probabilities"].open("wb") as f:  # a file object: also in a bucket
            np.save(f, probabilities.astype(np.float16))
    return {k: str(v) for k, v in paths.items()}


def _adapted_to_inputs(
    segmenter: Any,
    images: Sequence[InputImage],
    native: bool,
    training_size: tuple[int, int],
    options: PredictOptions,
    *,
    read: Callable[[pathlib.Path], np.ndarray],
) -> Any:
    """``adapt_bn="set"``: the segmenter with the BatchNorm statistics of all the inputs.

    A first pass over the readable images, as the model will see them (unreadable ones are
    reported by the segmenting pass).
    """
    import tqdm

    def load(item: InputImage) -> np.ndarray | None:
        try:
            image = read(item.path)
        except ImageError:
            return None
        return image if native else image_ops.resize_image(image, *training_size)

    bar = tqdm.tqdm(total=len(images), unit="img", disable=not options.progress, desc="adapt")

    def batches():
        readable = (x for x in image_ops.prefetch_map(load, images) if x is not None)
        for group in image_ops.same_size_batches(
            readable, batch_size=segmenter.batch_size, shape_of=lambda x: x.shape
        ):
            bar.update(len(group))
            yield np.stack(group)

    try:
        return segmenter.adapted(batches())
    finally:
        bar.close()


def _parser() -> argparse.ArgumentParser:
    parser = command_line.command_parser(
        PredictOptions,
        prog="python -m unet_jax.predict",
        description="Segment images with a trained run (see docs/EVALUATION.md).",
        out_help="Output directory.",
        workdir_required=False,  # not with --onnx
    )
    parser.add_argument("inputs", nargs="+", help="image files, glob patterns or folders")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 2 bad input, 4 bad checkpoint)."""
    return command_line.run_command(_parser(), argv, _predict_command)


def _predict_command(args: argparse.Namespace) -> int:
    if launch.leave_to_process_zero("predict", os.environ):
        return 0
    options = command_line.from_flags(PredictOptions, args)
    if not args.workdir and not options.onnx:
        raise OptionError("--workdir is required (or --onnx FILE.onnx)")
    result = predict_files(args.workdir, args.inputs, args.out, options, skip_bad=True)
    step = result["checkpoint"].get("step")
    source = options.onnx or args.workdir
    print(
        f"Segmented {len(result['images'])} image(s) with {source} step {step}: "
        f"{args.out}/labels, {args.out}/overlays"
        + (f", {args.out}/probabilities" if options.probabilities else "")
        + f", {args.out}/predictions.json"
    )
    if result["errors"]:
        print(f"error: {len(result['errors'])} input(s) skipped:", file=sys.stderr)
        for message in result["errors"]:
            print(f"  {message}", file=sys.stderr)
        return 2
    return 0
