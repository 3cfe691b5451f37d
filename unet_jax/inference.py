"""Reusing a trained run: load a checkpoint, apply the model, segment images of any size.

Public API::

    model, variables = unet_jax.load("runs/demo", checkpoint="best")
    apply_fn = make_apply_fn(model)           # jitted (variables, images) -> logits
    logits = apply_fn(variables, images)      # images uint8 [B, H, W, 3] RGB in 0..255

The model normalises its input itself (ImageNet mean/std on 0..255 RGB, its first op), so
images go in as uint8 (or float) RGB in 0..255, never pre-scaled. H and W must be multiples
of ``model.size_multiple`` (2 ** number of encoder levels: 16 for the 4-level U-Net).

:class:`Segmenter` lifts that restriction for images of any size, with one rule per size:

- **pad** (both padded sides <= ``max_side``, default 1024): the image is padded to the
  next multiple of ``size_multiple`` by reflection (edge replication when a side is too
  small to reflect), segmented whole, and the logits are cropped back. Reflection keeps
  the border statistics natural; the padded pixels never reach the output.
- **tile** (a padded side > ``max_side``): overlapping ``tile_size`` squares (default 512,
  stride ``tile_size - tile_overlap``, the last tile flush with the border) are segmented
  separately and their probabilities blended with a separable ramp window that falls
  linearly over the ``tile_overlap`` pixels at each tile edge (weight never 0), divided by
  the summed weights. Tile seams therefore fade instead of cutting.

Optional horizontal-flip test-time augmentation averages the probabilities of the image
and of its mirror image (mirrored back).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from unet_jax.model import OUTPUT_ACTIVATIONS, UNet, probabilities

CHECKPOINT_CHOICES = ("best", "latest")


class InferenceError(Exception):
    """A workdir, checkpoint, split or input that cannot be used; the message says which."""


class WorkdirError(InferenceError, FileNotFoundError):
    """The workdir is missing, not a training run, or holds no (such) checkpoint."""


class CheckpointSpecError(InferenceError, ValueError):
    """``checkpoint`` is neither "best", "latest" nor a step number."""


class OptionError(InferenceError, ValueError):
    """An invalid inference setting (batch size, tile size, activation...)."""


# ----------------------------------------------------------------------------
# Loading a run.
# ----------------------------------------------------------------------------


def _tupleize(value: Any) -> Any:
    """JSON lists back to the tuples that the config files use (image_size, features...)."""
    if isinstance(value, dict):
        return {k: _tupleize(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tupleize(v) for v in value)
    return value


def load_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Reads the configuration a run was trained with (``<workdir>/config.json``).

    Args:
      workdir: the training run directory.

    Returns:
      The configuration; JSON lists become tuples, ``null`` stays None.

    Raises:
      WorkdirError: the workdir or its config.json is missing or unreadable.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.exists():
        raise WorkdirError(f"workdir {workdir} does not exist")
    if not workdir.is_dir():
        raise WorkdirError(f"workdir {workdir} is not a directory")
    path = workdir / "config.json"
    if not path.is_file():
        raise WorkdirError(
            f"workdir {workdir} has no config.json, so it is not a training run directory "
            "(train.py writes config.json when it starts)"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(f"cannot read {path}: {e}") from e
    if not isinstance(raw, dict):
        raise WorkdirError(f"{path} does not hold a configuration (a JSON object)")
    return ml_collections.ConfigDict(_tupleize(raw))


def parse_checkpoint(spec: str | int) -> str | int:
    """Validates a checkpoint choice.

    Args:
      spec: "best", "latest", or a step number (int or decimal string).

    Returns:
      "best", "latest" or the step as an int.

    Raises:
      CheckpointSpecError: anything else.
    """
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        step = int(spec)
    elif isinstance(spec, str) and spec.strip().lower() in CHECKPOINT_CHOICES:
        return spec.strip().lower()
    elif isinstance(spec, str) and spec.strip().isdigit():
        step = int(spec.strip())
    else:
        raise CheckpointSpecError(
            f"checkpoint must be 'best', 'latest' or a step number, got {spec!r}"
        )
    if step < 0:
        raise CheckpointSpecError(f"checkpoint step must be >= 0, got {step}")
    return step


def _steps(directory: pathlib.Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


@dataclasses.dataclass
class LoadedRun:
    """A restored training run.

    Attributes:
      workdir: the run directory.
      config: its configuration.
      model: the UNet (inference mode: no BatchNorm device axis).
      variables: ``{"params", "batch_stats"}`` on the default device.
      step: the training step of the restored checkpoint.
      checkpoint: "best", "latest" or the requested step.
    """

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    model: UNet
    variables: dict[str, Any]
    step: int
    checkpoint: str | int

    @property
    def activation(self) -> str:
        """The output activation ("softmax" or "sigmoid")."""
        return self.config.model.output_activation


def load_run(
    workdir: str | pathlib.Path,
    *,
    checkpoint: str | int = "best",
    config: ml_collections.ConfigDict | None = None,
) -> LoadedRun:
    """Restores the model of a training run.

    The train state is restored into an abstract template (``jax.eval_shape`` of the state
    construction), so no initialisation is compiled or run. The checkpoint's SHA-256 is
    verified (see ``unet_jax.checkpointing``).

    Args:
      workdir: the training run directory (holds config.json, checkpoints/, best/).
      checkpoint: "best" (best validation metric), "latest", or a step number found in
        checkpoints/ or best/.
      config: use this configuration instead of the run's config.json.

    Returns:
      The loaded run.

    Raises:
      WorkdirError: missing workdir, config.json or checkpoint.
      CheckpointSpecError: an invalid ``checkpoint``.
      unet_jax.checkpointing.IncompatibleCheckpointError: the checkpoint was written by a
        model of another configuration (class count, widths).
      unet_jax.checkpointing.CheckpointError: the checkpoint is damaged (it is left in
        place: restoring never moves or changes a checkpoint).
    """
    # Imported here: orbax and the optimizer are only needed to restore.
    from unet_jax import checkpointing
    from unet_jax.train_state import create_model, create_train_state

    workdir = pathlib.Path(workdir)
    spec = parse_checkpoint(checkpoint)
    if config is None:
        config = load_config(workdir)
    elif not workdir.is_dir():
        raise WorkdirError(f"workdir {workdir} does not exist")
    latest_steps = _steps(workdir / "checkpoints")
    best_steps = _steps(workdir / "best")
    if not latest_steps and not best_steps:
        raise WorkdirError(
            f"workdir {workdir} holds no checkpoint (checkpoints/ and best/ are empty or "
            "missing): train first, or check the path"
        )
    if spec == "best" and not best_steps:
        raise WorkdirError(
            f"workdir {workdir} has no best checkpoint in best/ (validation never ran?); "
            f"use checkpoint 'latest' (steps {latest_steps})"
        )
    if spec == "latest" and not latest_steps:
        raise WorkdirError(
            f"workdir {workdir} has no checkpoint in checkpoints/; best/ has steps {best_steps}"
        )
    # Always an explicit step: evaluation reads the workdir only. (Without a step, the
    # Checkpointer would rename a damaged checkpoint and silently fall back to an older
    # one, which suits resuming training but not judging a chosen checkpoint.)
    if spec == "best":
        which, step = "best", best_steps[-1]
    elif spec == "latest":
        which, step = "latest", latest_steps[-1]
    elif spec in latest_steps:
        which, step = "latest", spec
    elif spec in best_steps:
        which, step = "best", spec
    else:
        raise WorkdirError(
            f"workdir {workdir} has no checkpoint of step {spec}; checkpoints/ has "
            f"{latest_steps}, best/ has {best_steps}"
        )

    try:
        template = jax.eval_shape(
            lambda: create_train_state(config, rng=jax.random.key(0), total_steps=1)
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise WorkdirError(
            f"the configuration of {workdir} cannot build a model ({type(e).__name__}: {e})"
        ) from e
    checkpointer = checkpointing.Checkpointer(
        workdir, keep=max(int(config.get("keep_checkpoints", 3)), 1)
    )
    try:
        state, _, _ = checkpointer.restore(template, step=step, which=which)
    except FileNotFoundError as e:
        raise WorkdirError(str(e)) from e
    finally:
        checkpointer.close()
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return LoadedRun(
        workdir=workdir,
        config=config,
        model=create_model(config),
        variables=jax.device_put(variables),
        step=int(state.step),
        checkpoint=spec,
    )


def load(workdir: str | pathlib.Path, checkpoint: str | int = "best") -> tuple[UNet, dict]:
    """Loads a trained model for reuse.

    Args:
      workdir: the training run directory.
      checkpoint: "best", "latest" or a step number.

    Returns:
      ``(model, variables)``: call ``model.apply(variables, images, train=False)`` or
      ``make_apply_fn(model)(variables, images)``; images uint8 RGB 0..255 [B, H, W, 3]
      with H, W multiples of ``model.size_multiple``.

    Raises:
      WorkdirError, CheckpointSpecError, IncompatibleCheckpointError, CheckpointError: see
      :func:`load_run`.
    """
    run = load_run(workdir, checkpoint=checkpoint)
    return run.model, run.variables


def make_apply_fn(model: UNet) -> Callable[[Any, Any], jax.Array]:
    """A jitted inference function of ``model``.

    Args:
      model: the UNet (e.g. from :func:`load`).

    Returns:
      ``apply_fn(variables, images) -> logits``: images [B, H, W, 3] uint8 (or float) RGB in
      0..255, H and W multiples of ``model.size_multiple``; logits float32
      [B, H, W, num_classes]. Compiles once per input shape.
    """

    @jax.jit
    def apply_fn(variables: Any, images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    return apply_fn


# ----------------------------------------------------------------------------
# Padding and tiling geometry (host side, pure functions).
# ----------------------------------------------------------------------------


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value`` (and >= ``multiple``)."""
    return max(multiple, -(-value // multiple) * multiple)


def pad_widths(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add (at the bottom and right) to reach multiples of ``multiple``."""
    return round_up(height, multiple) - height, round_up(width, multiple) - width


def _pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    # Reflection needs more pixels than it adds; tiny images fall back to edge replication.
    return "reflect" if pad_h < height and pad_w < width else "edge"


def pad_images(images: np.ndarray, multiple: int) -> np.ndarray:
    """Pads [B, H, W, C] images at the bottom/right to multiples of ``multiple`` (numpy).

    Args:
      images: the batch.
      multiple: the size multiple.

    Returns:
      The padded batch (reflection, or edge replication for sides too small to reflect).
    """
    _, h, w, _ = images.shape
    ph, pw = pad_widths(h, w, multiple)
    if ph == 0 and pw == 0:
        return images
    return np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=_pad_mode(h, w, ph, pw))


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Tiles start every ``stride`` pixels; the last one is moved back to end exactly at
    ``length`` (so every tile lies inside the image and every pixel is covered).

    Args:
      length: the side to cover (>= tile).
      tile: tile side.
      stride: distance between tile starts (1..tile).

    Returns:
      Sorted distinct offsets, the first 0 and the last ``length - tile``.
    """
    if tile > length:
        raise ValueError(f"tile {tile} is larger than the side {length}")
    if not 1 <= stride <= tile:
        raise ValueError(f"stride must be in [1, tile={tile}], got {stride}")
    last = length - tile
    origins = list(range(0, last, stride)) + [last]
    return sorted(set(origins))


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """The tile blending weights: a separable linear ramp over ``overlap`` pixels per edge.

    ``w[y, x] = r_h(y) * r_w(x)`` with ``r(i) = min(1, (i + 1) / (overlap + 1),
    (n - i) / (overlap + 1))``: 1 in the tile's interior, falling towards each edge but
    never reaching 0, so pixels only one tile covers keep a defined value.

    Args:
      height: tile height.
      width: tile width.
      overlap: ramp length in pixels (0: all ones).

    Returns:
      float32 [height, width] weights in (0, 1].
    """

    def ramp(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        r = np.minimum((i + 1) / (overlap + 1), (n - i) / (overlap + 1))
        return np.minimum(1.0, r)

    return np.outer(ramp(height), ramp(width)).astype(np.float32)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a uint8 [H, W, 3] image with PIL's bilinear filter (antialiased when
    shrinking), as the input pipeline's eval resize does."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output position under PIL's NEAREST resize (fixed point)."""
    from PIL import Image

    positions = np.arange(n_in, dtype=np.int32)[None, :]
    resized = Image.fromarray(positions).resize((n_out, 1), Image.Resampling.NEAREST)
    return np.asarray(resized)[0].astype(np.int64)


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of [h, w, ...] (labels, probabilities, any dtype).

    Picks exactly the pixels PIL's ``Image.NEAREST`` picks (the rule the data set uses for
    labels): the row and column maps are PIL's own, applied to every trailing channel, so
    labels and per-class probabilities resized with it stay aligned.
    """
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    return array[_nearest_indices(h, height)][:, _nearest_indices(w, width)]


# ----------------------------------------------------------------------------
# Segmenting images of any size.
# ----------------------------------------------------------------------------


class Segmenter:
    """Predicts per-pixel classes (and probabilities) for batches of images of any size.

    Pads or tiles each batch by the size rule of the module docstring, batches to a fixed
    ``batch_size`` (compiles once per image size) and shards batches over ``devices``.

    Args:
      apply_fn: ``(variables, images) -> logits`` (e.g. :func:`make_apply_fn`).
      variables: the model variables.
      size_multiple: H and W the model accepts must be multiples of this.
      activation: "softmax" or "sigmoid" (the run's ``config.model.output_activation``).
      tta_flip: average the probabilities of each image and of its horizontal mirror.
      batch_size: images (or tiles) per forward pass; rounded up to a multiple of the
        number of devices.
      max_side: largest padded side segmented whole; larger images are tiled.
      tile_size: tile side (a multiple of ``size_multiple``).
      tile_overlap: overlap between neighbouring tiles, also the blending ramp length.
      devices: devices to shard batches over (default: the first local device).
    """

    def __init__(
        self,
        apply_fn: Callable[[Any, Any], jax.Array],
        variables: Any,
        *,
        size_multiple: int,
        activation: str = "softmax",
        tta_flip: bool = False,
        batch_size: int = 8,
        max_side: int = 1024,
        tile_size: int = 512,
        tile_overlap: int = 128,
        devices: Sequence[jax.Device] | None = None,
    ):
        if size_multiple < 1:
            raise OptionError(f"size_multiple must be >= 1, got {size_multiple}")
        if batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        if tile_size < size_multiple or tile_size % size_multiple:
            raise OptionError(
                f"tile_size must be a positive multiple of {size_multiple}, got {tile_size}"
            )
        if not 0 <= tile_overlap < tile_size:
            raise OptionError(
                f"tile_overlap must be in [0, tile_size={tile_size}), got {tile_overlap}"
            )
        if max_side < size_multiple:
            raise OptionError(f"max_side must be >= {size_multiple}, got {max_side}")
        if activation not in OUTPUT_ACTIVATIONS:
            raise OptionError(f"activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")
        self.size_multiple = size_multiple
        self.activation = activation
        self.tta_flip = tta_flip
        self.max_side = max_side
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        devices = list(devices or jax.local_devices()[:1])
        self.batch_size = round_up(batch_size, len(devices))
        self._apply_fn = apply_fn
        mesh = Mesh(np.array(devices), ("batch",))
        self._batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))
        self._variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
        self._whole = jax.jit(self._segment_whole, static_argnames=("with_probabilities",))
        self._tiles = jax.jit(self._probabilities)

    @classmethod
    def from_run(cls, run: LoadedRun, **kwargs: Any) -> Segmenter:
        """A Segmenter for a :class:`LoadedRun` (keyword arguments as for the constructor)."""
        return cls(
            make_apply_fn(run.model),
            run.variables,
            size_multiple=run.model.size_multiple,
            activation=run.activation,
            **kwargs,
        )

    # -- device functions ------------------------------------------------------------

    def _probabilities(self, variables: Any, images: jax.Array) -> jax.Array:
        probs = probabilities(self._apply_fn(variables, images), self.activation)
        if self.tta_flip:
            mirrored = probabilities(self._apply_fn(variables, images[:, :, ::-1]), self.activation)
            probs = 0.5 * (probs + mirrored[:, :, ::-1])
        return probs

    def _segment_whole(
        self, variables: Any, images: jax.Array, *, with_probabilities: bool
    ) -> tuple[jax.Array, jax.Array | None]:
        _, h, w, _ = images.shape
        ph, pw = pad_widths(h, w, self.size_multiple)
        padded = images
        if ph or pw:
            mode = _pad_mode(h, w, ph, pw)
            padded = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
        if self.tta_flip:
            probs = self._probabilities(variables, padded)[:, :h, :w]
            labels = jnp.argmax(probs, axis=-1)
        else:
            # Without TTA the argmax of the logits, exactly as the training evaluation.
            logits = self._apply_fn(variables, padded)[:, :h, :w]
            labels = jnp.argmax(logits, axis=-1)
            probs = probabilities(logits, self.activation) if with_probabilities else None
        return labels.astype(jnp.uint8), probs if with_probabilities else None

    # -- host API -------------------------------------------------------------------

    def mode_for(self, height: int, width: int) -> str:
        """Returns "pad" or "tile": how an image of this size is segmented (module doc)."""
        m = self.size_multiple
        return "pad" if max(round_up(height, m), round_up(width, m)) <= self.max_side else "tile"

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
          images: uint8 [N, H, W, 3] RGB in 0..255 (any N, H, W).
          with_probabilities: also return the per-class probabilities.

        Returns:
          ``(labels, probabilities)``: uint8 [N, H, W] class ids (argmax) and float32
          [N, H, W, C] (None unless asked for).
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got shape {images.shape}")
        n, h, w, _ = images.shape
        if n == 0 or h == 0 or w == 0:
            raise ValueError(f"images must be non-empty, got shape {images.shape}")
        if self.mode_for(h, w) == "tile":
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
        tile_h = min(self.tile_size, round_up(h, m))
        tile_w = min(self.tile_size, round_up(w, m))
        padded = images
        if h < tile_h or w < tile_w:
            ph, pw = max(tile_h - h, 0), max(tile_w - w, 0)
            padded = np.pad(
                images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=_pad_mode(h, w, ph, pw)
            )
        big_h, big_w = padded.shape[1:3]
        stride = self.tile_size - self.tile_overlap
        boxes = [
            (y, x)
            for y in tile_origins(big_h, tile_h, stride)
            for x in tile_origins(big_w, tile_w, stride)
        ]
        window = blend_window(tile_h, tile_w, self.tile_overlap)
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


def same_size_batches(
    items: Iterable[Any], *, batch_size: int, shape_of: Callable[[Any], tuple[int, ...]]
) -> Iterator[list[Any]]:
    """Groups consecutive items of equal shape into lists of at most ``batch_size``.

    Args:
      items: anything (examples, images).
      batch_size: maximum group size.
      shape_of: the shape that must agree within a group.

    Returns:
      An iterator of non-empty lists, in the input order.
    """
    group: list[Any] = []
    shape = None
    for item in items:
        item_shape = shape_of(item)
        if group and (item_shape != shape or len(group) == batch_size):
            yield group
            group = []
        group.append(item)
        shape = item_shape
    if group:
        yield group


def prefetch_map(fn: Callable[[Any], Any], items: Sequence[Any], *, depth: int = 8) -> Iterator:
    """``map(fn, items)`` computed by a few threads, at most ``depth`` results ahead.

    Decoding PNGs releases the GIL, so reading the next images overlaps the forward pass
    without holding a whole split in memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, max(depth, 1))) as pool:
        pending: collections.deque = collections.deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(fn, item))
                break
            yield result
