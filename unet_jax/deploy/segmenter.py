"""Segmenting images of any size at native scale: whole (padded), or in blended tiles.

:class:`Segmenter` lifts the model's size restriction with one rule per size:

- **whole** (both padded sides <= ``max_side``, default 1024): the image is padded to the
  next multiple of ``size_multiple`` by reflection (edge replication when a side is too
  small to reflect), segmented whole, and the logits are cropped back. Reflection keeps
  the border statistics natural; the padded pixels never reach the output.
- **tiled** (a padded side > ``max_side``): overlapping ``tile_size`` squares (default 512,
  stride ``tile_size - tile_overlap``, the last tile flush with the border) are segmented
  separately and their probabilities blended with a separable ramp window that falls
  linearly over the ``tile_overlap`` pixels at each tile edge (weight never 0), divided by
  the summed weights. Tile seams therefore fade instead of cutting.

Test-time augmentation averages probabilities: of the image and its mirror image
(``tta_flip``, mirrored back), and of the image resized by each factor of ``tta_scales``
(each side rounded up to a multiple of ``size_multiple``, the probabilities resized back
bilinearly), with flips at every scale. Without TTA the labels are the argmax of the
logits, exactly as the training evaluation.

Test-time BatchNorm adaptation (``adapt_bn``, ``unet_jax.deploy.bn_adapt``) replaces the
checkpoint's BatchNorm statistics by those of the images: "set" by :meth:`Segmenter.adapted`
on the whole set first, "stream" by a running average that every :meth:`Segmenter.predict`
call updates before it segments. Each image is taken whole (padded) at the scale it is
given, also when it is segmented in tiles.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from unet_jax.data.image_ops import blend_window, pad_mode, pad_widths, round_up, tile_origins
from unet_jax.deploy.bn_adapt import BatchNormAdapter
from unet_jax.deploy.options import OptionError, SegmenterOptions
from unet_jax.model.outputs import predict_labels
from unet_jax.model.unet import OUTPUT_ACTIVATIONS, probabilities
from unet_jax.run.loading import DEFAULT_CHECKPOINT, LoadedRun, load_run, make_apply_fn


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """What the compiled functions are specialised on."""

    size_multiple: int
    activation: str
    tta_flip: bool
    tta_scales: tuple[float, ...]

    @property
    def tta(self) -> bool:
        return self.tta_flip or self.tta_scales != (1.0,)


def _resized(images: jax.Array, scale: float, multiple: int) -> jax.Array:
    """Images resized (bilinear) by ``scale``, each side rounded up to ``multiple``.

    The result has the input's dtype (uint8 RGB, rounded): a model takes uint8 images,
    and an exported one (ONNX) takes nothing else.
    """
    n, h, w, c = images.shape
    size = [round_up(max(1, round(side * scale)), multiple) for side in (h, w)]
    resized = jax.image.resize(images.astype(jnp.float32), (n, *size, c), "bilinear")
    if jnp.issubdtype(images.dtype, jnp.integer):
        info = jnp.iinfo(images.dtype)
        resized = jnp.clip(jnp.round(resized), info.min, info.max)
    return resized.astype(images.dtype)


def _probabilities(
    variables: Any, images: jax.Array, *, apply_fn: Callable, options: _Compiled
) -> jax.Array:
    n, h, w, _ = images.shape
    total = None
    for scale in options.tta_scales:
        x = images if scale == 1.0 else _resized(images, scale, options.size_multiple)
        probs = probabilities(apply_fn(variables, x), options.activation)
        if options.tta_flip:
            mirrored = probabilities(apply_fn(variables, x[:, :, ::-1]), options.activation)
            probs = 0.5 * (probs + mirrored[:, :, ::-1])
        if scale != 1.0:
            probs = jax.image.resize(probs, (n, h, w, probs.shape[-1]), "bilinear")
        total = probs if total is None else total + probs
    return total / len(options.tta_scales)


def _segment_whole(
    variables: Any,
    images: jax.Array,
    *,
    apply_fn: Callable,
    options: _Compiled,
    with_probabilities: bool,
) -> tuple[jax.Array, jax.Array | None]:
    _, h, w, _ = images.shape
    ph, pw = pad_widths(h, w, options.size_multiple)
    padded = images
    if ph or pw:
        padded = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=pad_mode(h, w, ph, pw))
    if options.tta:
        probs = _probabilities(variables, padded, apply_fn=apply_fn, options=options)[:, :h, :w]
        labels = jnp.argmax(probs, axis=-1)
    else:
        # Without TTA the argmax of the logits, exactly as the training evaluation.
        logits = apply_fn(variables, padded)[:, :h, :w]
        labels = predict_labels(logits)
        probs = probabilities(logits, options.activation) if with_probabilities else None
    return labels.astype(jnp.uint8), probs if with_probabilities else None


class Segmenter:
    """Predicts per-pixel classes (and probabilities) for batches of images of any size.

    Pads or tiles each batch by the size rule of the module docstring, batches to a fixed
    ``batch_size`` (compiles once per image size) and shards batches over ``devices``.

    Args:
      apply_fn: ``(variables, images) -> logits`` (e.g. :func:`make_apply_fn`).
      variables: the model variables.
      size_multiple: H and W the model accepts must be multiples of this.
      activation: "softmax" or "sigmoid" (the run's ``config.model.output_activation``).
      options: how to segment (:class:`SegmenterOptions`; its defaults when None, its
        unset recipe fields by ``SegmenterOptions.resolved``).
      devices: devices to shard batches over (default: the first local device).
      model: the Flax module of ``variables``; needed for ``adapt_bn`` only.
      **overrides: fields of :class:`SegmenterOptions` replacing those of ``options``
        (``Segmenter(apply_fn, variables, size_multiple=16, tta_flip=True)``).

    The options are fixed at construction: ``options`` is frozen, and ``batch_size`` is
    the forward-pass size after rounding up to a multiple of the device count. Only the
    adapted BatchNorm statistics change (``adapt_bn``, module docstring).
    """

    def __init__(
        self,
        apply_fn: Callable[[Any, Any], jax.Array],
        variables: Any,
        *,
        size_multiple: int,
        activation: str = "softmax",
        options: SegmenterOptions | None = None,
        devices: Sequence[jax.Device] | None = None,
        model: Any = None,
        **overrides: Any,
    ):
        devices = list(devices or jax.local_devices()[:1])
        options = dataclasses.replace(options or SegmenterOptions(), **overrides).resolved()
        options.check_model(size_multiple)
        if activation not in OUTPUT_ACTIVATIONS:
            raise OptionError(f"activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")
        self._options = options
        self._size_multiple = size_multiple
        self._activation = activation
        batch_size = options.batch_size or options.FALLBACK_BATCH_SIZE
        self._batch_size = round_up(batch_size, len(devices))
        mesh = Mesh(np.array(devices), ("batch",))
        self._batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self._variables = jax.device_put(variables, self._replicated)
        self._adapter = None
        if options.adapt_bn != "off":
            if model is None:
                raise OptionError(
                    f"adapt_bn={options.adapt_bn!r} needs the JAX model (a run's checkpoint): "
                    "an exported model carries the checkpoint's BatchNorm statistics"
                )
            self._adapter = BatchNormAdapter(
                model, variables, mode=options.adapt_bn, momentum=options.adapt_momentum
            )
        # The options are baked into the compiled functions: they cannot change later.
        compiled = _Compiled(size_multiple, activation, options.tta_flip, tuple(options.tta_scales))
        bound = dict(apply_fn=apply_fn, options=compiled)
        self._whole = jax.jit(
            functools.partial(_segment_whole, **bound), static_argnames=("with_probabilities",)
        )
        self._tiles = jax.jit(functools.partial(_probabilities, **bound))

    @property
    def options(self) -> SegmenterOptions:
        """The (immutable) options."""
        return self._options

    @property
    def size_multiple(self) -> int:
        """The model's: H and W it accepts are multiples of this."""
        return self._size_multiple

    @property
    def activation(self) -> str:
        """The model's output activation."""
        return self._activation

    @property
    def batch_size(self) -> int:
        """Images per forward pass: the options' rounded up to a multiple of the devices."""
        return self._batch_size

    @classmethod
    def from_run(
        cls, run: LoadedRun, options: SegmenterOptions | None = None, **kwargs: Any
    ) -> Segmenter:
        """A Segmenter for a :class:`LoadedRun`; batch size by default the run's eval batch.

        Args:
          run: the loaded run.
          options: how to segment (defaults when None).
          **kwargs: ``devices`` and option overrides, as for the constructor.

        Returns:
          The Segmenter.
        """
        options = (options or SegmenterOptions()).for_config(run.config)
        return cls(
            make_apply_fn(run.model),
            run.variables,
            size_multiple=run.model.size_multiple,
            activation=run.activation,
            options=options,
            model=run.model,
            **kwargs,
        )

    @classmethod
    def load(
        cls,
        workdir: str | pathlib.Path,
        checkpoint: str | int = DEFAULT_CHECKPOINT,
        options: SegmenterOptions | None = None,
        **kwargs: Any,
    ) -> Segmenter:
        """A Segmenter of a run's checkpoint, with the run's batch size and inference recipe.

        Args:
          workdir: the training run directory.
          checkpoint: "best", "latest" or a step number.
          options: how to segment; fields left None take the run's (``for_config``).
          **kwargs: ``devices`` and option overrides, as for the constructor.

        Returns:
          The Segmenter.

        Raises:
          WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError:
            see ``unet_jax.run.loading.load_run``.
        """
        return cls.from_run(load_run(workdir, checkpoint=checkpoint), options, **kwargs)

    # -- BatchNorm adaptation ---------------------------------------------------------

    def adapted(self, batches: Iterable[np.ndarray]) -> Segmenter:
        """A Segmenter whose BatchNorm statistics are re-estimated on these images.

        Starts from the checkpoint's statistics: "set" pools the statistics of all the
        images, "stream" runs its average over them in order (and goes on in
        :meth:`predict`). This Segmenter is unchanged; the compiled functions are shared.

        Args:
          batches: uint8 [N, H, W, 3] batches (any sizes), as they will be segmented.

        Returns:
          The adapted Segmenter.

        Raises:
          OptionError: ``adapt_bn`` is "off".
        """
        if self._adapter is None:
            raise OptionError("adapted() needs adapt_bn 'set' or 'stream', not 'off'")
        fresh = copy.copy(self)
        fresh._adapter = self._adapter.restarted()
        for images in batches:
            fresh._adapt(np.asarray(images))
        return fresh

    def _adapt(self, images: np.ndarray) -> None:
        n, h, w, _ = images.shape
        ph, pw = pad_widths(h, w, self.size_multiple)
        if ph or pw:
            images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=pad_mode(h, w, ph, pw))
        for part in self._chunks(n):
            self._adapter.update(images[part])
        self._variables = jax.device_put(self._adapter.variables(), self._replicated)

    # -- host API -------------------------------------------------------------------

    def is_tiled(self, height: int, width: int) -> bool:
        """Whether an image of this size is segmented in tiles (else whole; module doc)."""
        m = self.size_multiple
        return max(round_up(height, m), round_up(width, m)) > self._options.max_side

    def _chunks(self, n: int) -> Iterator[slice]:
        for start in range(0, n, self.batch_size):
            yield slice(start, min(start + self.batch_size, n))

    def _full_batch(self, images: np.ndarray) -> jax.Array:
        """Pads the batch axis to ``batch_size`` (one compile per image size) and shards it."""
        n = images.shape[0]
        if n < self.batch_size:
            filler = np.zeros((self.batch_size - n,) + images.shape[1:], images.dtype)
            images = np.concatenate([images, filler])
        return jax.device_put(images, self._batch_sharding)

    def predict(
        self, images: np.ndarray, *, with_probabilities: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Segments a batch of same-size images.

        Args:
          images: [N, H, W, C] as the model takes them (8-bit RGB: uint8 in 0..255; other
            images: their bands and dtype as stored); any N, H, W.
          with_probabilities: also return the per-class probabilities.

        Returns:
          ``(labels, probabilities)``: uint8 [N, H, W] class ids (argmax) and float32
          [N, H, W, C] (None unless asked for).
        """
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
        n, h, w, _ = images.shape
        if n == 0 or h == 0 or w == 0:
            raise ValueError(f"images must be non-empty, got shape {images.shape}")
        if self._options.adapt_bn == "stream":
            self._adapt(images)
        elif self._options.adapt_bn == "set" and not self._adapter.seen:
            raise OptionError(
                "adapt_bn='set': call segmenter.adapted(batches) on the images to segment first"
            )
        if self.is_tiled(h, w):
            return self._predict_tiled(images, with_probabilities)
        labels, probs = [], []
        for part in self._chunks(n):
            out_labels, out_probs = self._whole(
                self._variables,
                self._full_batch(images[part]),
                with_probabilities=with_probabilities,
            )
            count = part.stop - part.start
            labels.append(np.asarray(out_labels)[:count])
            if with_probabilities:
                probs.append(np.asarray(out_probs)[:count])
        return np.concatenate(labels), np.concatenate(probs) if with_probabilities else None

    def _predict_tiled(
        self, images: np.ndarray, with_probabilities: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        m = self.size_multiple
        n, h, w, _ = images.shape
        # Sides shorter than a tile are padded to a multiple and covered by one tile row/col.
        tile_h = min(self._options.tile_size, round_up(h, m))
        tile_w = min(self._options.tile_size, round_up(w, m))
        padded = images
        if h < tile_h or w < tile_w:
            ph, pw = max(tile_h - h, 0), max(tile_w - w, 0)
            padded = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=pad_mode(h, w, ph, pw))
        big_h, big_w = padded.shape[1:3]
        stride = self._options.tile_size - self._options.tile_overlap
        boxes = [
            (y, x)
            for y in tile_origins(big_h, tile_h, stride)
            for x in tile_origins(big_w, tile_w, stride)
        ]
        window = blend_window(tile_h, tile_w, self._options.tile_overlap)
        all_labels, all_probs = [], []
        for i in range(n):
            acc = None
            weight = np.zeros((big_h, big_w), np.float32)
            for part in self._chunks(len(boxes)):
                tiles = np.stack(
                    [padded[i, y : y + tile_h, x : x + tile_w] for y, x in boxes[part]]
                )
                probs = np.asarray(self._tiles(self._variables, self._full_batch(tiles)))
                if acc is None:
                    acc = np.zeros((big_h, big_w, probs.shape[-1]), np.float32)
                for k, (y, x) in enumerate(boxes[part]):
                    acc[y : y + tile_h, x : x + tile_w] += probs[k] * window[..., None]
                    weight[y : y + tile_h, x : x + tile_w] += window
            blended = (acc / weight[..., None])[:h, :w]
            all_labels.append(np.argmax(blended, axis=-1).astype(np.uint8))
            if with_probabilities:
                all_probs.append(blended)
        labels = np.stack(all_labels)
        return labels, np.stack(all_probs) if with_probabilities else None
