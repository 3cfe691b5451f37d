"""Evaluation of a trained run on a whole split: metrics, Markdown, pictures.

``run_evaluation(workdir, EvalOptions(...))`` (and ``python eval.py``) restores a
checkpoint, segments every example of the split exactly once and writes to
``<workdir>/eval/<split>/``:

- ``metrics.json``: mean IoU, mean Dice, pixel accuracy, mean class accuracy, per class
  (by name) IoU, Dice, precision, recall and ground-truth pixel count, the confusion
  matrix (rows ground truth, columns prediction), the checkpoint step and the options;
  with ``full_resolution`` the same under ``"full_resolution"``. Undefined scores
  (a class absent from ground truth and prediction) are ``null``.
- ``metrics.md``: the same as Markdown tables.
- ``confusion_matrix.png``, ``gallery.png``, ``class_panels.png`` (and ``*_full.png``
  at full resolution), ``training_curves.png`` (from ``metrics.jsonl``).
- ``report.html`` (and ``report_full.html``): scores, per-class table, confusion matrix and
  every image with its IoU, worst first, in one self-contained page (``report_html``).

Two resolutions:

- **training resolution**: the split's examples resized to ``config.image_size`` exactly
  as the training loop's validation does (``create_eval_batches``: image bilinear, label
  nearest, the last batch padded and masked) and scored by the same loop
  (``unet_jax.evaluation.validation.score_batches``), so the numbers are those of
  ``metrics.jsonl``. Runs trained on crops (``config.input_mode="crop"``) are scored, as
  in their validation, on the training-size tiles of the native images
  (``validation.validation_source``); ``full_resolution`` adds the whole native images,
  padded or tiled and blended.
- **full resolution** (``full_resolution=True``): the examples at their stored size, from
  the full-size data set (``lyft_udacity/resized_256[_nohood]`` -> ``lyft_udacity/full
  [_nohood]``; any other data set is used as it is, e.g. the 256x256 synthetic scenes of a
  run trained at 128x128). Labels are never resized; the model's input is padded or tiled
  by the size rule of :mod:`unet_jax.inference`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from unet_jax.data import image_ops
from unet_jax.data import pipeline as input_pipeline
from unet_jax.data import sources as data_sources
from unet_jax.data.augment import check_example
from unet_jax.data.classes import IGNORE_LABEL, ClassSet
from unet_jax.deploy.backend import open_backend
from unet_jax.deploy.options import OptionError, SegmenterOptions
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.errors import InferenceError
from unet_jax.evaluation import metrics, report_html, reports, validation
from unet_jax.run import metric_writers
from unet_jax.run.workdir import Workdir

SPLITS = ("train", "validation", "test")
FULL_RESOLUTION_INPUTS = ("native", "resized")


class SplitError(InferenceError, ValueError):
    """The split does not exist in the data set, or is empty."""


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how.

    Attributes:
      split: "train", "validation" or "test".
      checkpoint: "best", "latest" or a step number.
      full_resolution: also evaluate at the examples' stored resolution.
      full_resolution_input: how the model sees a full-size example: "native" (at its
        stored size, padded or tiled) or "resized" (resized to the training size, the
        prediction resized back with nearest neighbour); the labels stay full size.
        None: the scale the model was trained at ("native" for crop-trained runs,
        "resized" otherwise).
      segment: TTA, batch size (None: ``config.eval_batch_size``) and tiling.
      num_gallery: examples shown in the gallery.
      data_dir: TFDS data directory; None: the run's ``config.data_dir``.
      pictures: write the PNG pictures.
      progress: show a progress bar.
      onnx: score this exported ONNX model (ONNX Runtime) instead of the checkpoint; the
        run gives the configuration, classes and data set.
      onnx_threads: ONNX Runtime intra-op threads.
    """

    split: str = "test"
    checkpoint: str | int = "best"
    full_resolution: bool = False
    full_resolution_input: str | None = None
    segment: SegmenterOptions = SegmenterOptions()
    num_gallery: int = 4
    data_dir: str | None = None
    pictures: bool = True
    progress: bool = True
    onnx: str | None = None
    onnx_threads: int = 2


def full_resolution_dataset(dataset: str) -> str:
    """The full-size counterpart of a data set name.

    Args:
      dataset: e.g. ``lyft_udacity/resized_256``.

    Returns:
      ``lyft_udacity/full`` for ``resized_256``, ``lyft_udacity/full_nohood`` for
      ``resized_256_nohood``; any other name unchanged.
    """
    name, sep, config = dataset.partition("/")
    if config.startswith("resized_256"):
        config = "full" + config[len("resized_256") :]
    return f"{name}{sep}{config}"


def _name(example: Any, index: int) -> str:
    name = example.get("name", f"#{index}") if hasattr(example, "get") else f"#{index}"
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def evaluate_source(
    segmenter: Segmenter,
    source: Any,
    *,
    class_names: Sequence[str],
    image_size: tuple[int, int] | None,
    batch_size: int,
    input_size: tuple[int, int] | None = None,
    num_samples: int = 4,
    description: str = "eval",
    progress: bool = True,
    on_example: Callable[..., None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Segments every example of ``source`` once and scores the predictions.

    Args:
      segmenter: the model.
      source: random-access examples (data contract).
      class_names: the C class names.
      image_size: (H, W) to resize examples (image and label) to, as in training; None to
        score at the stored sizes.
      batch_size: examples per batch.
      input_size: with ``image_size`` None: (H, W) to resize the model's input to, the
        prediction being resized back (nearest) to the stored size; None: segment at the
        stored size (pad or tile).
      num_samples: how many of the first examples to return for pictures.
      description: progress bar label.
      progress: show a progress bar.
      on_example: called with ``image``, ``label``, ``prediction``, ``name`` and
        ``confusion`` (its own [C, C]) for every example scored (``report_html.ImageRows.add``).

    Returns:
      ``(results, samples)``: ``segmentation_metrics`` plus ``confusion`` (int64 [C, C]),
      ``num_examples``, ``sizes`` ({"HxW": count}) and ``modes`` (examples per way of
      segmenting: "pad", "tile", "resize");
      samples are dicts of ``image``, ``label``, ``prediction``, ``name``.
    """
    total = len(source)
    num_classes = len(class_names)
    samples: list[dict[str, Any]] = []
    sizes: collections.Counter = collections.Counter()
    modes: collections.Counter = collections.Counter()
    bar = tqdm.tqdm(total=total, desc=description, unit="img", disable=not progress, leave=False)

    def segment(images: np.ndarray) -> tuple[np.ndarray, str]:
        if input_size is None:
            return segmenter.predict(images)[0], segmenter.mode_for(*images.shape[1:3])
        h, w = images.shape[1:3]
        small = np.stack([image_ops.resize_image(x, *input_size) for x in images])
        predictions = segmenter.predict(small)[0]
        return np.stack([image_ops.resize_nearest(p, h, w) for p in predictions]), "resize"

    def score(batch: dict[str, Any]) -> dict[str, Any]:
        images, labels, mask = batch["image"], batch["label"], batch["mask"]
        predictions, mode = segment(images)
        real = int(np.sum(mask))
        for k in range(images.shape[0]):
            if mask[k] and len(samples) < num_samples:
                samples.append(
                    {
                        "image": images[k],
                        "label": labels[k],
                        "prediction": predictions[k],
                        "name": batch["names"][k],
                    }
                )
            if mask[k] and on_example is not None:
                on_example(
                    image=images[k],
                    label=labels[k],
                    prediction=predictions[k],
                    name=batch["names"][k],
                    confusion=metrics.confusion_counts(
                        predictions[k : k + 1], labels[k : k + 1], num_classes=num_classes
                    ),
                )
        sizes[f"{images.shape[1]}x{images.shape[2]}"] += real
        modes[mode] += real
        bar.update(real)
        confusion = metrics.confusion_counts(
            predictions, labels, num_classes=num_classes, mask=mask
        )
        return {"confusion": confusion, "count": real}

    # Example names for the pictures' captions (and every example's for on_example).
    num_named = total if on_example is not None else min(num_samples, total)

    def named(batches):
        for b, batch in enumerate(batches):
            first = b * batch_size
            names = [
                _name(source[first + k], first + k) if first + k < num_named else ""
                for k in range(batch["image"].shape[0])
            ]
            yield {**batch, "names": names}

    def whole_images():  # stored sizes: batches of equal-size images, nothing padded
        def load(index: int) -> tuple[np.ndarray, np.ndarray, str]:
            example = source[index]
            image, label = check_example(example)
            return image, label, _name(example, index)

        for group in image_ops.same_size_batches(
            image_ops.prefetch_map(load, range(total)),
            batch_size=batch_size,
            shape_of=lambda item: item[0].shape,
        ):
            yield {
                "image": np.stack([g[0] for g in group]),
                "label": np.stack([g[1] for g in group]),
                "mask": np.ones(len(group), bool),
                "names": [g[2] for g in group],
            }

    if image_size is not None:  # the training loop's batches: resized, the last one padded
        batches = named(
            input_pipeline.create_eval_batches(
                source, global_batch_size=batch_size, image_size=tuple(image_size)
            )
        )
    else:
        batches = whole_images()
    results = validation.score_batches(batches, score, class_names=class_names)
    seen = results["num_examples"]
    bar.close()
    if seen != total:  # a source whose __len__ disagrees with what it yields
        raise RuntimeError(f"evaluated {seen} examples but the split has {total}")
    results["sizes"] = dict(sizes)
    results["modes"] = dict(modes)
    return results, samples


def _open_split(
    config: ml_collections.ConfigDict,
    split: str,
    *,
    dataset: str,
    data_dir: str | None,
    prepare_fn: data_sources.PrepareFn | None,
) -> Any:
    config = ml_collections.ConfigDict(config.to_dict())
    config.dataset = dataset
    if data_dir is not None:
        config.data_dir = data_dir
    try:
        dataset = data_sources.open_dataset(config, splits=(split,), prepare_fn=prepare_fn)
    except ValueError as e:  # open_dataset names the split and the available ones
        raise SplitError(str(e)) from e
    try:
        return dataset.sources[split]
    except KeyError as e:
        raise SplitError(str(e)) from e


def _pick_split(sources: dict[str, Any], split: str, what: str) -> Any:
    if split not in sources:
        raise SplitError(f"{what} have no split {split!r}; they have {sorted(sources)}")
    return sources[split]


def _json_results(results: dict[str, Any], resolution: str, dataset: str) -> dict[str, Any]:
    out = {
        "resolution": resolution,
        "dataset": dataset,
        **{k: v for k, v in results.items() if k != "confusion"},
        "confusion_matrix": results["confusion"],
    }
    return metrics.to_jsonable(out)


def run_evaluation(
    workdir: str | pathlib.Path,
    options: EvalOptions = EvalOptions(),
    *,
    sources: dict[str, Any] | None = None,
    full_sources: dict[str, Any] | None = None,
    prepare_fn: data_sources.PrepareFn | None = None,
    out_dir: str | pathlib.Path | None = None,
) -> dict[str, Any]:
    """Evaluates a run's checkpoint on one split and writes the report files.

    Args:
      workdir: the training run directory.
      options: split, checkpoint, resolutions, TTA, tiling, pictures.
      sources: {split: source} to use instead of the run's data set (tests, custom data).
      full_sources: {split: source} of full-size examples for ``full_resolution``; None:
        the full-size data set (see the module docstring), or ``sources`` when given.
      prepare_fn: prepares a data set that is not prepared yet (eval.py passes the TFDS
        builder's); None requires a prepared data set.
      out_dir: where to write; None: ``<workdir>/eval/<split>``.

    Returns:
      The report (the content of metrics.json) plus ``"files"``: the written paths.

    Raises:
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: the
        run or checkpoint cannot be used (see ``unet_jax.inference.load_run``).
      SplitError: the split does not exist or is empty.
      FileNotFoundError: the data set is not prepared and cannot be.
    """
    if jax.process_count() > 1:
        raise InferenceError("evaluation runs in one process; start eval.py on one host")
    start = time.perf_counter()
    workdir = pathlib.Path(workdir)
    backend = open_backend(
        workdir=workdir,
        checkpoint=options.checkpoint,
        onnx=options.onnx,
        onnx_threads=options.onnx_threads,
        options=options.segment,
    )
    config, segmenter, classes = backend.config, backend.segmenter, backend.classes
    checkpoint = backend.checkpoint
    seconds = {"load": time.perf_counter() - start}
    if options.split not in SPLITS and sources is None:
        raise SplitError(f"unknown split {options.split!r}; choose from {', '.join(SPLITS)}")
    if sources is not None:
        source = _pick_split(sources, options.split, "the given sources")
    else:
        source = _open_split(
            config,
            options.split,
            dataset=config.dataset,
            data_dir=options.data_dir,
            prepare_fn=prepare_fn,
        )
    crop_trained = config.get("input_mode", "resize") == "crop"
    full_input = options.full_resolution_input or ("native" if crop_trained else "resized")
    if full_input not in FULL_RESOLUTION_INPUTS:
        raise OptionError(
            f"full_resolution_input must be one of {FULL_RESOLUTION_INPUTS}, got "
            f"{options.full_resolution_input!r}"
        )
    if len(source) == 0:
        raise SplitError(f"split {options.split!r} of {config.dataset} is empty")
    image_size = tuple(int(v) for v in config.image_size)
    resolution = f"{image_size[0]}x{image_size[1]}"
    # The geometry of the training loop's validation, so that the metric that chose best/
    # is the one reported: resized examples, or for crop-trained runs training-size tiles
    # at native scale (whole native images: full_resolution).
    scored = validation.validation_source(source, config) if crop_trained else source
    if crop_trained:
        resolution = f"native, {resolution} tiles"
    tick = time.perf_counter()
    html_rows = [report_html.ImageRows(classes)] if options.pictures else []
    results, samples = evaluate_source(
        segmenter,
        scored,
        class_names=classes.names,
        image_size=image_size,
        batch_size=segmenter.batch_size,
        num_samples=options.num_gallery,
        description=f"{options.split} at {resolution}",
        progress=options.progress,
        on_example=html_rows[0].add if html_rows else None,
    )
    seconds["training_resolution"] = time.perf_counter() - tick
    report: dict[str, Any] = {
        "workdir": str(workdir),
        "split": options.split,
        "dataset": config.dataset if sources is None else "(in-memory sources)",
        "checkpoint": checkpoint,
        "options": {
            **{k: v for k, v in dataclasses.asdict(options).items() if k != "segment"},
            **dataclasses.asdict(options.segment),
        },
        "class_names": list(classes.names),
        "class_colors": classes.to_json()["classes"],
        **_json_results(results, resolution, config.dataset),
    }
    report["options"]["batch_size"] = segmenter.batch_size
    report["options"]["full_resolution_input"] = full_input
    full_samples: list[dict[str, Any]] = []
    if options.full_resolution:
        full_dataset = full_resolution_dataset(config.dataset)
        if full_sources is not None:
            full_source = _pick_split(full_sources, options.split, "the given full-size sources")
            full_dataset = "(in-memory sources)"
        elif sources is not None or full_dataset == config.dataset:
            full_source = source  # the same examples, at their stored size
            if sources is not None:
                full_dataset = "(in-memory sources)"
        else:
            full_source = _open_split(
                config,
                options.split,
                dataset=full_dataset,
                data_dir=options.data_dir,
                prepare_fn=prepare_fn,
            )
        tick = time.perf_counter()
        if options.pictures:
            html_rows.append(report_html.ImageRows(classes))
        full_results, full_samples = evaluate_source(
            segmenter,
            full_source,
            class_names=classes.names,
            image_size=None,
            batch_size=segmenter.batch_size,
            input_size=image_size if full_input == "resized" else None,
            num_samples=options.num_gallery,
            description=f"{options.split} at full resolution",
            progress=options.progress,
            on_example=html_rows[-1].add if html_rows else None,
        )
        seconds["full_resolution"] = time.perf_counter() - tick
        sizes = full_results["sizes"]
        full_resolution = next(iter(sizes)) if len(sizes) == 1 else "mixed sizes"
        report["full_resolution"] = _json_results(full_results, full_resolution, full_dataset)
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    report["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat()

    default_out = Workdir(workdir).eval_dir(options.split, onnx=options.onnx is not None)
    out = pathlib.Path(out_dir) if out_dir is not None else default_out
    files = write_report(
        out,
        report,
        samples,
        full_samples,
        workdir=workdir,
        pictures=options.pictures,
        html_rows=html_rows,
    )
    report["files"] = [str(f) for f in files]
    return report


def write_report(
    out: pathlib.Path,
    report: dict[str, Any],
    samples: Sequence[dict[str, Any]],
    full_samples: Sequence[dict[str, Any]],
    *,
    workdir: pathlib.Path,
    pictures: bool = True,
    html_rows: Sequence[report_html.ImageRows] = (),
) -> list[pathlib.Path]:
    """Writes metrics.json, metrics.md, the pictures and report.html into ``out``.

    Args:
      out: output directory (created).
      report: the evaluation report.
      samples: examples at training resolution for the gallery and class panels.
      full_samples: the same at full resolution (may be empty).
      workdir: the run directory (its metrics.jsonl gives the training curves).
      pictures: whether to draw the PNGs and write the HTML pages.
      html_rows: every image of each resolution, for ``report_html.write_pages``.

    Returns:
      The written files.
    """
    out.mkdir(parents=True, exist_ok=True)
    names = report["class_names"]
    classes = ClassSet.from_json({"classes": report["class_colors"]})
    step = report["checkpoint"]["step"]
    where = f"{report['split']} split, step {step}"
    images: list[pathlib.Path] = []
    if pictures:
        parts = [("", report, samples)]
        if report.get("full_resolution"):
            parts.append(("_full", report["full_resolution"], full_samples))
        for suffix, results, part_samples in parts:
            label = f"{where}, {results['resolution']}"
            cm = np.asarray(results["confusion_matrix"], np.int64)
            images.append(
                reports.plot_confusion_matrix(
                    cm, names, out / f"confusion_matrix{suffix}.png", title=f"Confusion, {label}"
                )
            )
            if part_samples:
                images.append(
                    reports.plot_gallery(
                        part_samples, classes, out / f"gallery{suffix}.png", title=label
                    )
                )
                richest = max(
                    part_samples,
                    key=lambda s: len(np.unique(s["label"][s["label"] != IGNORE_LABEL])),
                )
                if (richest["label"] != IGNORE_LABEL).any():
                    images.append(
                        reports.plot_class_panels(
                            richest, classes, out / f"class_panels{suffix}.png", title=label
                        )
                    )
        records = metric_writers.read_metrics(workdir)
        if records:
            images.append(
                reports.plot_training_curves(
                    records,
                    out / "training_curves.png",
                    title=f"Training of {workdir.name}",
                    mark_step=step,
                )
            )
    metrics_json = out / "metrics.json"
    metrics_json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    markdown = out / "metrics.md"
    markdown.write_text(reports.metrics_markdown(report, [p.name for p in images]))
    pages = report_html.write_pages(out, report=report, rows=html_rows) if pictures else []
    return [metrics_json, markdown, *pages, *images]
