"""Validation: every example of a split scored once, on the devices.

The one evaluation function of this project for examples at the training size: the training
loop calls it at every validation step and eval.py for its training-resolution scores, so
the two cannot drift. The confusion matrix is computed on the devices, summed over them and
accumulated in int64 on the host; the last batch is padded and its padding masked out. Runs
trained on crops are scored at native scale in training-size tiles (``eval_tiles``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import jax
import ml_collections

from unet_jax.data import pipeline as input_pipeline
from unet_jax.evaluation import metrics
from unet_jax.evaluation import tiles as eval_tiles


class Driver(Protocol):
    """What validation uses of a device driver (``unet_jax.train.parallel.Driver``)."""

    layout: str
    eval_step: Callable[[Any, Any], Any]
    put_batch: Callable[[dict[str, Any]], Any]
    get_metrics: Callable[[Any], dict[str, Any]]


def evaluate(
    driver: Driver,
    device_state: Any,
    source: Any,
    config: ml_collections.ConfigDict,
    *,
    class_names: tuple[str, ...],
) -> dict[str, Any]:
    """Evaluates every example of ``source`` exactly once.

    Args:
      driver: the device driver.
      device_state: the driver's replicated state.
      source: random-access examples (for crop-trained runs, `validation_source`'s tiles).
      config: uses ``eval_batch_size``, ``image_size``, ``num_classes``.
      class_names: the data set's class names (metric keys).

    Returns:
      ``segmentation_metrics`` plus ``loss`` (mean per-example loss) and ``confusion``
      (int64 numpy matrix).
    """
    batches = input_pipeline.create_eval_batches(
        source,
        global_batch_size=config.eval_batch_size,
        image_size=tuple(config.image_size),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_local_devices=jax.local_device_count(),
        layout=driver.layout,
    )

    def score_on_devices(batch: dict[str, Any]) -> dict[str, Any]:
        return driver.get_metrics(driver.eval_step(device_state, driver.put_batch(batch)))

    return score_batches(batches, score_on_devices, class_names=class_names)


def validation_source(source: Any, config: ml_collections.ConfigDict) -> Any:
    """What `evaluate` scores for a run: the examples resized to ``image_size`` (by the
    eval batches), or for crop-trained runs their training-size tiles at native scale.

    Indexing the tiles reads every example once, so the training loop builds this once.
    """
    if config.input_mode == "crop":
        return eval_tiles.TiledSource(source, tuple(config.image_size))
    return source


def score_batches(
    batches: Iterable[dict[str, Any]],
    score_batch: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """The scoring loop every evaluation goes through (training loop and eval.py).

    Args:
      batches: padded batches with a ``mask`` of real examples.
      score_batch: batch -> ``confusion`` [C, C] of its real examples, ``count`` (real
        examples) and optionally ``loss_sum``.
      class_names: the C class names.

    Returns:
      ``segmentation_metrics`` plus ``confusion`` (int64), ``num_examples`` and, when the
      batches were scored with a loss, ``loss`` (mean per-example loss).
    """
    accumulator = metrics.ConfusionMatrix(len(class_names))
    loss_sum, count, with_loss = 0.0, 0, False
    for batch in batches:
        out = score_batch(batch)
        accumulator.update(out["confusion"])
        count += int(out["count"])
        if "loss_sum" in out:
            loss_sum += float(out["loss_sum"])
            with_loss = True
    results = metrics.segmentation_metrics(accumulator.matrix, class_names)
    if with_loss:
        results["loss"] = loss_sum / max(count, 1)
    results["num_examples"] = count
    results["confusion"] = accumulator.matrix
    return results


def flat_scalars(results: dict[str, Any]) -> dict[str, Any]:
    scalars = {
        k: results[k]
        for k in ("loss", "mean_iou", "mean_dice", "pixel_accuracy", "mean_class_accuracy")
    }
    scalars.update({k: v for k, v in results.items() if k.startswith("foreground_")})
    for name, per_class in results["per_class"].items():
        scalars[f"iou/{name}"] = per_class["iou"]
    return scalars
