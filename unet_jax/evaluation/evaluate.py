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

- **training resolution**: the split in the geometry of the training loop's validation
  (``Geometry.of_run``), scored by the same evaluator (``unet_jax.evaluation.evaluator``),
  so the numbers are those of ``metrics.jsonl``: the examples resized to
  ``config.image_size`` (image bilinear, label nearest, the last batch padded and
  masked), or for runs trained on crops (``config.input_mode="crop"``, native scale) the
  training-size tiles of the native images.
- **full resolution** (``full_resolution=True``): the examples at their stored size, from
  the full-size data set (``lyft_udacity/resized_256[_nohood]`` -> ``lyft_udacity/full
  [_nohood]``; any other data set is used as it is, e.g. the 256x256 synthetic scenes of a
  run trained at 128x128). Labels are never resized; the model sees them at ``scale``
  (``resize`` or ``native``; default the run's trained scale).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from unet_jax import storage
from unet_jax.data import display
from unet_jax.data import sources as data_sources
from unet_jax.data.augment import check_example
from unet_jax.data.classes import IGNORE_LABEL, ClassSet
from unet_jax.data.splits import SPLITS
from unet_jax.deploy.backend import open_backend
from unet_jax.deploy.options import band_for, scale_for
from unet_jax.errors import InferenceError
from unet_jax.evaluation import challenge, metrics, report_html, reports
from unet_jax.evaluation.evaluator import (
    Evaluator,
    Geometry,
    Predictor,
    adapted_to,
    example_name,
    segmenter_predictor,
)
from unet_jax.evaluation.options import EvalOptions
from unet_jax.evaluation.tiles import TiledSource
from unet_jax.run import metric_writers
from unet_jax.run.workdir import Workdir


class SplitError(InferenceError, ValueError):
    """The split does not exist in the data set, or is empty."""


class WholeImages:
    """Puts the tiles of each source image back together (``tiles`` geometry).

    Tiles arrive in order, image after image; each pixel takes the prediction of the tile
    that scored it (the first to cover it, ``tiles.TiledSource``), and the image's
    confusion matrix is the sum of its tiles'. ``emit`` gets one call per source image.

    Args:
      tiled: the tiles of the split.
      emit: called with ``image``, ``label``, ``prediction``, ``name`` and ``confusion``
        of each whole image.
    """

    def __init__(self, tiled: TiledSource, emit: Callable[..., None]) -> None:
        self._tiled = tiled
        self._emit = emit
        self._current: dict[str, Any] | None = None

    def add(self, *, index: int, prediction: np.ndarray, confusion: np.ndarray) -> None:
        """Records the prediction and counts of tile ``index``."""
        i, y, x = self._tiled.origin(index)
        if self._current is not None and self._current["i"] != i:
            self.flush()
        if self._current is None:
            example = self._tiled.source[i]
            image, label = check_example(example)
            self._current = {
                "i": i,
                "image": image,
                "label": label,
                "name": example_name(example, i),
                "prediction": np.zeros(label.shape, np.uint8),
                "written": np.zeros(label.shape, bool),
                "confusion": np.zeros_like(confusion),
            }
        whole = self._current
        h, w = whole["label"].shape
        th, tw = self._tiled.tile_size
        window = (slice(y, y + min(th, h - y)), slice(x, x + min(tw, w - x)))
        fresh = ~whole["written"][window]
        tile = np.asarray(prediction)[: fresh.shape[0], : fresh.shape[1]]
        whole["prediction"][window][fresh] = tile[fresh]
        whole["written"][window] = True
        whole["confusion"] += confusion

    def flush(self) -> None:
        """Emits the image being assembled (call once more after the last tile)."""
        if self._current is None:
            return
        whole, self._current = self._current, None
        self._emit(
            image=whole["image"],
            label=whole["label"],
            prediction=whole["prediction"],
            name=whole["name"],
            confusion=whole["confusion"],
        )


def _score(
    evaluator: Evaluator,
    predict: Predictor,
    *,
    num_samples: int,
    description: str,
    progress: bool,
    on_example: Callable[..., None] | None,
    display_bands: Sequence[int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs ``evaluator`` with a progress bar, keeping the first images for pictures.

    Pictures and ``on_example`` see whole source images in every geometry: the tiles of
    the ``tiles`` geometry are put back together (`WholeImages`).

    Args:
      evaluator: the split in its geometry.
      predict: host predictions (``segmenter_predictor``).
      num_samples: how many of the first images to return for pictures.
      description: progress bar label.
      progress: show a progress bar.
      on_example: called with ``image``, ``label``, ``prediction``, ``name`` and
        ``confusion`` (its own [C, C]) for every image scored (``report_html.ImageRows.add``).
      display_bands: ``config.display_bands``: pictures show images that are not 8-bit RGB
        through these bands, stretched (`unet_jax.data.display`).

    Returns:
      ``(results, samples)``: ``Evaluator.run``'s results, whose ``num_examples`` counts
      source images (and ``num_tiles`` the tiles scored, in the ``tiles`` geometry);
      samples are dicts of ``image``, ``label``, ``prediction``, ``name``.
    """
    source = evaluator.source
    tiled = source if isinstance(source, TiledSource) else None
    samples: list[dict[str, Any]] = []
    bar = tqdm.tqdm(
        total=len(source),
        desc=description,
        unit="tile" if tiled else "img",
        disable=not progress,
        leave=False,
    )

    def predict_and_count(batch: dict[str, Any]) -> dict[str, Any]:
        out = predict(batch)
        bar.update(int(np.sum(batch["mask"])))
        return out

    def emit(*, image, label, prediction, name, confusion) -> None:
        picture = display.to_rgb(image, bands=display_bands)
        shown = {"image": picture, "label": label, "prediction": prediction, "name": name}
        if len(samples) < num_samples:
            samples.append(shown)
        if on_example is not None:
            on_example(**shown, confusion=confusion)

    whole = WholeImages(tiled, emit) if tiled else None

    def each(*, index, batch, k, prediction, confusion) -> None:
        if len(samples) >= num_samples and on_example is None:
            return
        if whole is not None:
            whole.add(index=index, prediction=prediction, confusion=confusion)
            return
        names = batch.get("names")
        name = names[k] if names else example_name(source[index], index)
        emit(
            image=batch["image"][k],
            label=batch["label"][k],
            prediction=prediction,
            name=name,
            confusion=confusion,
        )

    try:
        results = evaluator.run(predict_and_count, on_example=each)
        if whole is not None:
            whole.flush()
    finally:
        bar.close()
    if tiled is not None:
        results = {**results, "num_examples": len(tiled.source), "num_tiles": len(tiled)}
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
    lyft = challenge.challenge_score(results["confusion"], list(results["per_class"]))
    if lyft is not None:  # Lyft-Udacity classes: the challenge's score beside mIoU
        out.update({f"challenge_{key}": value for key, value in lyft.items()})
        out["challenge_hood"] = challenge.hood_state(dataset)
    return metrics.to_jsonable(out)


def run_evaluation(
    workdir: str | pathlib.Path,
    options: EvalOptions | None = None,
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
        run or checkpoint cannot be used (see ``unet_jax.run.loading.load_run``).
      SplitError: the split does not exist or is empty.
      FileNotFoundError: the data set is not prepared and cannot be.
    """
    if jax.process_count() > 1:
        raise InferenceError("evaluation runs in one process; start eval.py on one host")
    options = options or EvalOptions()
    start = time.perf_counter()
    workdir = Workdir.of(workdir).root
    backend = open_backend(workdir=workdir, source=options, options=options.segment)
    config, segmenter, classes = backend.config, backend.segmenter, backend.classes
    seconds = {"load": time.perf_counter() - start}
    source = _split_source(config, options, sources=sources, prepare_fn=prepare_fn)
    full_scale = scale_for(options.scale, config)
    full_band = (
        band_for(options.band, config, scale=full_scale) if options.full_resolution else None
    )
    html_rows: list[report_html.ImageRows] = []
    score = functools.partial(
        _score_split,
        segmenter=segmenter,
        classes=classes,
        options=options,
        html_rows=html_rows,
        display_bands=config.get("display_bands"),
    )
    # The geometry of the training loop's validation, so that the metric that chose best/
    # is the one reported: resized examples, or for crop-trained runs training-size tiles
    # at native scale (whole native images: full_resolution).
    geometry = Geometry.of_run(config)
    results, samples, seconds["training_resolution"] = score(
        source, geometry=geometry, input_size=None, description=geometry.describe()
    )
    report: dict[str, Any] = {
        "workdir": str(workdir),
        "split": options.split,
        "dataset": config.dataset if sources is None else IN_MEMORY,
        "checkpoint": backend.checkpoint,
        "options": _options_record(options, segmenter, scale=full_scale, band=full_band),
        "class_names": list(classes.names),
        "class_colors": classes.to_json()["classes"],
        # Classes of the data that this run ignores: the scores leave their pixels out.
        "void_classes": list(classes.void),
        **_json_results(results, geometry.describe(), config.dataset),
    }
    full_samples: list[dict[str, Any]] = []
    if options.full_resolution:
        report["full_resolution"], full_samples, seconds["full_resolution"] = _score_full_size(
            score,
            config,
            options,
            source=source,
            sources=sources,
            full_sources=full_sources,
            prepare_fn=prepare_fn,
            scale=full_scale,
            band=full_band,
        )
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    report["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat()

    default_out = Workdir(workdir).eval_dir(options.split, onnx=options.onnx is not None)
    out = storage.path(out_dir, what="--out") if out_dir is not None else default_out
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


IN_MEMORY = "(in-memory sources)"  # the data set named in reports of given sources


def _options_record(
    options: EvalOptions, segmenter: Any, *, scale: str, band: tuple[float, float] | None
) -> dict[str, Any]:
    """The report's ``options``: the evaluation's, with the segmenter's resolved ones, and
    the full-resolution pass's scale and band (None without one)."""
    return {
        **{k: v for k, v in dataclasses.asdict(options).items() if k != "segment"},
        **dataclasses.asdict(segmenter.options),
        "batch_size": segmenter.batch_size,
        "scale": scale if options.full_resolution else None,
        "band": list(band) if band else None,
    }


def _split_source(
    config: ml_collections.ConfigDict,
    options: EvalOptions,
    *,
    sources: dict[str, Any] | None,
    prepare_fn: data_sources.PrepareFn | None,
) -> Any:
    """The examples of the split to evaluate: from ``sources``, else the run's data set.

    Raises:
      SplitError: the split does not exist or is empty.
    """
    if sources is not None:
        source = _pick_split(sources, options.split, "the given sources")
    elif options.split not in SPLITS:
        raise SplitError(f"unknown split {options.split!r}; choose from {', '.join(SPLITS)}")
    else:
        source = _open_split(
            config,
            options.split,
            dataset=config.dataset,
            data_dir=options.data_dir,
            prepare_fn=prepare_fn,
        )
    if len(source) == 0:
        raise SplitError(f"split {options.split!r} of {config.dataset} is empty")
    return source


def _full_size_source(
    config: ml_collections.ConfigDict,
    options: EvalOptions,
    *,
    source: Any,
    sources: dict[str, Any] | None,
    full_sources: dict[str, Any] | None,
    prepare_fn: data_sources.PrepareFn | None,
) -> tuple[Any, str]:
    """The split's examples at their stored (full) size, and the data set they come from.

    The builders know which data set holds the same images at full size; any other data
    set (and given ``sources``) is used as it is.
    """
    if full_sources is not None:
        return _pick_split(full_sources, options.split, "the given full-size sources"), IN_MEMORY
    if sources is not None:
        return source, IN_MEMORY
    full_dataset = prepare_fn.full_resolution(config.dataset) if prepare_fn else config.dataset
    if full_dataset == config.dataset:
        return source, full_dataset  # the same examples, at their stored size
    full_source = _open_split(
        config,
        options.split,
        dataset=full_dataset,
        data_dir=options.data_dir,
        prepare_fn=prepare_fn,
    )
    return full_source, full_dataset


def _score_full_size(
    score: Callable[..., tuple[dict[str, Any], list[dict[str, Any]], float]],
    config: ml_collections.ConfigDict,
    options: EvalOptions,
    *,
    source: Any,
    sources: dict[str, Any] | None,
    full_sources: dict[str, Any] | None,
    prepare_fn: data_sources.PrepareFn | None,
    scale: str,
    band: tuple[float, float] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """The full-resolution pass: the split's examples at their stored size, whole.

    Args:
      score: :func:`_score_split` with the run's segmenter, classes and options.
      config: the run's config.
      options: the evaluation's options.
      source: the split's examples (used as they are where no full-size data set exists).
      sources, full_sources, prepare_fn: as for :func:`run_evaluation`.
      scale: "resize" (the model sees them at the training size) or "native".
      band: at "resize": rows segmented again at native scale (``band_for``), or None.

    Returns:
      ``(results for metrics.json, samples, seconds)``.
    """
    full_source, full_dataset = _full_size_source(
        config,
        options,
        source=source,
        sources=sources,
        full_sources=full_sources,
        prepare_fn=prepare_fn,
    )
    image_size = tuple(int(v) for v in config.image_size)
    results, samples, seconds = score(
        full_source,
        geometry=Geometry("native"),  # whole examples, padded or tiled
        input_size=image_size if scale == "resize" else None,
        description="full resolution" + (" with the band at native scale" if band else ""),
        band=band,
    )
    sizes = results["sizes"]
    resolution = next(iter(sizes)) if len(sizes) == 1 else "mixed sizes"
    return _json_results(results, resolution, full_dataset), samples, seconds


def _score_split(
    source: Any,
    *,
    geometry: Geometry,
    input_size: tuple[int, int] | None,
    description: str,
    segmenter: Any,
    band: tuple[float, float] | None = None,
    classes: ClassSet,
    options: EvalOptions,
    html_rows: list[report_html.ImageRows],
    display_bands: Sequence[int] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Scores one resolution of the split (:func:`_score`), adding its page's rows.

    Args:
      source: the examples.
      geometry: how the examples reach the model.
      input_size: (H, W) the model sees the examples resized to; None: native scale.
      description: the resolution, for the progress bar.
      segmenter: the run's segmenter (its BatchNorm adaptation restarted for this pass).
      band: with ``input_size``: rows segmented again at native scale (``band_for``).
      classes: the run's classes.
      options: the evaluation's options (gallery size, pictures, progress).
      html_rows: the report pages' rows, one ``ImageRows`` per resolution (appended to).
      display_bands: the run's ``config.display_bands`` (how pictures show its images).

    Returns:
      ``(results, samples, seconds)``.
    """
    tick = time.perf_counter()
    evaluator = Evaluator(
        source, geometry=geometry, class_names=classes.names, batch_size=segmenter.batch_size
    )
    rows = report_html.ImageRows(classes) if options.pictures else None
    if rows is not None:
        html_rows.append(rows)
    adapted = adapted_to(segmenter, evaluator, input_size=input_size)
    results, samples = _score(
        evaluator,
        segmenter_predictor(adapted, input_size=input_size, band=band),
        num_samples=options.num_gallery,
        description=f"{options.split} at {description}",
        progress=options.progress,
        on_example=rows.add if rows is not None else None,
        display_bands=display_bands,
    )
    return results, samples, time.perf_counter() - tick


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
    classes = ClassSet.from_json(
        {"classes": report["class_colors"], "void": report.get("void_classes", [])}
    )
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
