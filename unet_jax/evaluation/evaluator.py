"""The one evaluator: a predictor scored on every example of a split, in one geometry.

An :class:`Evaluator` holds a split and a :class:`Geometry` (how the examples reach the
model) and, for any predictor, yields the split's confusion matrix and the scores derived
from it (``metrics.segmentation_metrics``). The training loop validates with it and eval.py
scores with it, both in ``Geometry.of_run(config)``, so the metric that picks ``best/`` is
the one eval.py reports. A geometry is a scale (``unet_jax.deploy.options.SCALES``) and a
size:

- ``Geometry("resize", size)``: every example resized to the training size (image
  bilinear, label nearest; runs trained on resized images).
- ``Geometry("native", size)``: native scale, cut into training-size tiles, every pixel
  counted once (``tiles.TiledSource``; runs trained on crops).
- ``Geometry("native")``: whole examples at their stored size, in batches of equal size;
  the predictor pads or tiles them (eval.py's full resolution).

Batches of a geometry with a size have one shape, the last batch padded (``mask`` False),
and follow the device driver's layout, so they shard across devices and hosts.

A predictor maps a batch (``image``, ``label``, ``mask``) to either ``confusion`` [C, C]
plus ``count`` (and optionally ``loss_sum``), counted on the devices
(:func:`device_predictor`: the driver's eval step on the replicated state), or
``prediction`` [B, H, W] class ids on the host (:func:`segmenter_predictor`, which also
says the ``scale`` and whether the images were ``tiled``), counted here by
``metrics.confusion_counts``. Counting lives only in ``metrics``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import ml_collections
import numpy as np

from unet_jax.data import image_ops
from unet_jax.data import pipeline as input_pipeline
from unet_jax.data.augment import check_example
from unet_jax.deploy import banded
from unet_jax.deploy.options import SCALES, trained_scale
from unet_jax.evaluation import metrics
from unet_jax.evaluation.tiles import TiledSource

Predictor = Callable[[dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How the examples of a split reach the model.

    Attributes:
      scale: "resize" or "native" (module docstring).
      size: (height, width): the resize target, or the tile size at native scale; None:
        whole examples at native scale.
    """

    scale: str
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.scale == "resize" and self.size is None:
            raise ValueError("scale 'resize' needs a size")

    @classmethod
    def of_run(cls, config: ml_collections.ConfigDict) -> Geometry:
        """The validation geometry of a run: its trained scale, in training-size batches."""
        return cls(trained_scale(config), tuple(int(v) for v in config.image_size))

    @property
    def tiled(self) -> bool:
        """Whether examples are cut into training-size tiles (native scale with a size)."""
        return self.scale == "native" and self.size is not None

    def describe(self) -> str:
        """ "128x128", "native, 32x32 tiles" or "native" (report captions)."""
        if self.size is None:
            return "native"
        size = f"{self.size[0]}x{self.size[1]}"
        return f"native, {size} tiles" if self.tiled else size


class Driver(Protocol):
    """What the device predictor uses of a driver (``unet_jax.train.parallel.Driver``)."""

    layout: str
    eval_step: Callable[[Any, Any], Any]
    put_batch: Callable[[dict[str, Any]], Any]
    get_metrics: Callable[[Any], dict[str, Any]]


def device_predictor(driver: Driver, device_state: Any) -> Predictor:
    """The driver's eval step on the replicated state: counts and loss, summed on devices."""

    def predict(batch: dict[str, Any]) -> dict[str, Any]:
        inputs = {k: batch[k] for k in ("image", "label", "mask")}
        return driver.get_metrics(driver.eval_step(device_state, driver.put_batch(inputs)))

    return predict


def segmenter_predictor(
    segmenter: Any,
    *,
    input_size: tuple[int, int] | None = None,
    band: tuple[float, float] | None = None,
) -> Predictor:
    """Host predictions of a ``Segmenter`` (a loaded run or an ONNX model).

    Args:
      segmenter: has ``predict(images) -> (labels, _)`` and ``is_tiled(h, w)``.
      input_size: (H, W) to resize the model's input to, the prediction being resized back
        (nearest) to the batch's size; None: the batch at native scale (padded or tiled).
      band: with ``input_size``: rows segmented again at native scale, replacing those
        rows of the resized-back prediction, as predict does (``unet_jax.deploy.banded``).

    Returns:
      batch -> ``prediction``, ``scale`` ("resize" or "native") and ``tiled`` (bool).
    """

    def predict(batch: dict[str, Any]) -> dict[str, Any]:
        images = batch["image"]
        if input_size is None:
            tiled = segmenter.is_tiled(*images.shape[1:3])
            return {"prediction": segmenter.predict(images)[0], "scale": "native", "tiled": tiled}
        h, w = images.shape[1:3]
        small = np.stack([image_ops.resize_image(x, *input_size) for x in images])
        back = [image_ops.resize_nearest(p, h, w) for p in segmenter.predict(small)[0]]
        if band is not None:
            strips = banded.segment_bands(
                segmenter, list(images), band=band, with_probabilities=False
            )
            back = [banded.paste(p, strip, part=1) for p, strip in zip(back, strips, strict=True)]
        return {"prediction": np.stack(back), "scale": "resize", "tiled": False}

    return predict


def adapted_to(
    segmenter: Any, evaluator: Evaluator, *, input_size: tuple[int, int] | None = None
) -> Any:
    """The segmenter for one pass over ``evaluator``, its BatchNorm adaptation restarted.

    ``adapt_bn="set"``: adapted to every example of the split as the model sees it
    (resized to ``input_size`` when given; a first pass over the split); "stream": fresh
    from the checkpoint's statistics, the running average then follows the batches;
    "off": the segmenter itself.
    """
    mode = segmenter.options.adapt_bn
    if mode == "off":
        return segmenter
    if mode == "stream":
        return segmenter.adapted(())

    def images() -> Iterator[np.ndarray]:
        for batch in evaluator.batches():
            real = np.asarray(batch["image"])[np.asarray(batch["mask"], bool)]
            if len(real) and input_size is not None:
                real = np.stack([image_ops.resize_image(x, *input_size) for x in real])
            if len(real):
                yield real

    return segmenter.adapted(images())


def example_name(example: Any, index: int) -> str:
    """An example's ``name`` as text, or ``#index`` when it has none."""
    name = example.get("name", f"#{index}") if hasattr(example, "get") else f"#{index}"
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


class Evaluator:
    """Scores predictors on every example of ``source`` exactly once, in one geometry.

    Args:
      source: random-access examples (data contract). Tiled, it is indexed here, which
        reads every example once, so build the evaluator once and run it many times.
      geometry: how the examples reach the model.
      class_names: the C class names (metric keys).
      batch_size: global examples per batch.
      layout, process_index, process_count, num_local_devices: the device driver's share
        of each batch (``create_eval_batches``); the defaults suit one host process.
    """

    def __init__(
        self,
        source: Any,
        *,
        geometry: Geometry,
        class_names: Sequence[str],
        batch_size: int,
        layout: str = "mesh",
        process_index: int = 0,
        process_count: int = 1,
        num_local_devices: int = 1,
    ) -> None:
        self.geometry = geometry
        self.class_names = tuple(class_names)
        self.source = TiledSource(source, geometry.size) if geometry.tiled else source
        self._batch_size = batch_size
        self._share = {
            "layout": layout,
            "process_index": process_index,
            "process_count": process_count,
            "num_local_devices": num_local_devices,
        }

    def batches(self) -> Iterator[dict[str, Any]]:
        """One pass: ``image``, ``label``, ``mask`` (and ``names`` for whole examples)."""
        if self.geometry.size is not None:
            return input_pipeline.create_eval_batches(
                self.source,
                global_batch_size=self._batch_size,
                image_size=self.geometry.size,
                **self._share,
            )
        return self._whole_images()

    def _whole_images(self) -> Iterator[dict[str, Any]]:
        """Batches of equal-size examples at their stored size, nothing padded."""

        def load(index: int) -> tuple[np.ndarray, np.ndarray, str]:
            example = self.source[index]
            image, label = check_example(example)
            return image, label, example_name(example, index)

        for group in image_ops.same_size_batches(
            image_ops.prefetch_map(load, range(len(self.source))),
            batch_size=self._batch_size,
            shape_of=lambda item: item[0].shape,
        ):
            yield {
                "image": np.stack([g[0] for g in group]),
                "label": np.stack([g[1] for g in group]),
                "mask": np.ones(len(group), bool),
                "names": [g[2] for g in group],
            }

    def run(
        self, predict: Predictor, *, on_example: Callable[..., None] | None = None
    ) -> dict[str, Any]:
        """Scores ``predict`` on the whole split.

        Args:
          predict: batch -> counts or host predictions (module docstring).
          on_example: with host predictions, called for every real example in order with
            ``index``, ``batch`` (the batch dict), ``k`` (its row), ``prediction`` and
            ``confusion`` (its own int64 [C, C]). One process only.

        Returns:
          ``segmentation_metrics`` plus ``confusion`` (int64 [C, C]), ``num_examples``,
          ``sizes`` ({"HxW": examples}); ``loss`` (mean per-example loss) when the
          predictor gives ``loss_sum``; ``scales`` (examples per scale) and ``tiled``
          (examples segmented in tiles) when it gives ``scale``.

        Raises:
          RuntimeError: the examples scored are not those of the source (a source whose
            ``__len__`` disagrees with what it yields).
        """
        num_classes = len(self.class_names)
        accumulator = metrics.ConfusionMatrix(num_classes)
        sizes: collections.Counter = collections.Counter()
        scales: collections.Counter = collections.Counter()
        tiled = 0
        loss_sum, count, with_loss = 0.0, 0, False
        for batch in self.batches():
            out = predict(batch)
            real = int(np.sum(batch["mask"]))
            if "prediction" in out:
                out = {**out, "count": real}
                out["confusion"] = self._host_counts(batch, out, first=count, on_example=on_example)
            accumulator.update(out["confusion"])
            count += int(out["count"])
            sizes[f"{batch['image'].shape[-3]}x{batch['image'].shape[-2]}"] += real
            if "scale" in out:
                scales[out["scale"]] += real
                tiled += real if out["tiled"] else 0
            if "loss_sum" in out:
                loss_sum += float(out["loss_sum"])
                with_loss = True
        if count != len(self.source):
            raise RuntimeError(f"evaluated {count} examples but the split has {len(self.source)}")
        results = metrics.segmentation_metrics(accumulator.matrix, self.class_names)
        if with_loss:
            results["loss"] = loss_sum / max(count, 1)
        results["num_examples"] = count
        results["confusion"] = accumulator.matrix
        results["sizes"] = dict(sizes)
        if scales:
            results["scales"] = dict(scales)
            results["tiled"] = tiled
        return results

    def _host_counts(
        self,
        batch: dict[str, Any],
        out: dict[str, Any],
        *,
        first: int,
        on_example: Callable[..., None] | None,
    ) -> np.ndarray:
        predictions, labels, mask = out["prediction"], batch["label"], batch["mask"]
        num_classes = len(self.class_names)
        if on_example is None:
            return metrics.confusion_counts(predictions, labels, num_classes=num_classes, mask=mask)
        total = np.zeros((num_classes, num_classes), np.int64)
        index = first
        for k in np.flatnonzero(mask):
            own = metrics.confusion_counts(
                predictions[k : k + 1], labels[k : k + 1], num_classes=num_classes
            )
            on_example(index=index, batch=batch, k=int(k), prediction=predictions[k], confusion=own)
            total += own
            index += 1
        return total


def flat_scalars(results: dict[str, Any]) -> dict[str, Any]:
    """The scalars a validation writes to ``metrics.jsonl`` (per-class IoU as ``iou/NAME``)."""
    scalars = {k: results[k] for k in ("loss", *metrics.MEAN_SCORES)}
    scalars.update({k: v for k, v in results.items() if k.startswith("foreground_")})
    for name, per_class in results["per_class"].items():
        scalars[f"iou/{name}"] = per_class["iou"]
    return scalars
