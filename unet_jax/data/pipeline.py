"""grain input pipelines: infinite shuffled training batches and padded eval batches.

Sources are random-access: anything with ``__len__`` and ``__getitem__(i)``
returning an example of the data contract (``image`` uint8 [H, W, 3], ``label``
uint8 [H, W, 1] with class ids and 255 = ignore, ``name``); in training that is
``tfds.builder(...).as_data_source()[split]`` (an ArrayRecordDataSource that
decodes the PNGs). Sources must be picklable when ``worker_count > 0``.

Batches are dicts of numpy arrays:

* ``image``: uint8 [..., H, W, 3] (or the data's own bands and dtype, float32 after
  a per-band intensity change), NOT normalised. Converting to float and
  normalising is the model's first op, on the accelerator: uint8 batches are 4x
  smaller to move between processes and to the device, and the host CPU (the
  bottleneck of this pipeline) never touches float images.
* ``label``: uint8 [..., H, W], class ids, 255 (``IGNORE_LABEL``) = ignored.
* ``mask`` (eval only): bool [...], True for real examples, False for padding.

``name`` and any other feature are dropped (strings cannot go to a device).

Leading dims ``[...]`` follow ``layout``:

* ``"pmap"``: [num_local_devices, per_device_batch];
* ``"mesh"``: [local_batch], for ``jax.make_array_from_process_local_data``.

``global_batch_size`` is the batch over ALL processes; each process produces
``global_batch_size // process_count`` examples per batch.

Determinism. The training stream is a function of the step: batch k depends
only on (source, seed, global batch size, k). Each epoch is one global shuffle,
process p takes slice p of every global batch, and random augmentation draws
from a per-example generator keyed by (seed, position in the stream). Batches
are built by position (a grain ``MapDataset`` indexed by step), so they are the
same for any ``worker_count`` and any number of processes, and resuming needs
only the step (``create_train_loader(..., start_step=k)``): no iterator state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing import shared_memory
from typing import Any, Protocol

import grain.python as grain
import numpy as np
from absl import flags

from unet_jax.data.augment import AugmentConfig, Resize, build_train_transforms, check_example
from unet_jax.data.classes import IGNORE_LABEL

__all__ = [
    "AugmentConfig",
    "MixtureSource",
    "RandomAccessSource",
    "create_eval_batches",
    "create_train_loader",
    "local_batch_size",
    "num_eval_batches",
]

LAYOUTS = ("pmap", "mesh")


class RandomAccessSource(Protocol):
    """What the pipelines need from a data source."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


# The smallest share of a mixture's stream a source may have. Counting a source's examples
# up to a position scans about 1 / (its share) positions (``examples_before``): 1e-3 keeps
# that under a tenth of a second; a smaller share hung the first step for hours.
MIN_MIXTURE_SHARE = 1e-3


def smallest_share_problem(weights: Sequence[float]) -> str | None:
    """What is wrong with a mixture's weights for the sampler, or None.

    Args:
      weights: one weight per source, each finite and > 0.

    Returns:
      e.g. ``"a share of 1e-09 is below the smallest the sampler serves, 0.001"``.
    """
    share = min(weights) / sum(weights)
    if share < MIN_MIXTURE_SHARE:
        return (
            f"a share of {share:.3g} is below the smallest the sampler serves, "
            f"{MIN_MIXTURE_SHARE:g} (weights {', '.join(f'{w:g}' for w in weights)})"
        )
    return None


class MixtureSource:
    """Several training sources drawn into one stream with weights; the first is the target.

    The training loader interleaves them with grain's ``MapDataset.mix``: stream position
    q comes from the source that grain's mixing assigns to q (a deterministic interleave
    whose shares equal the weights, after grain rounds them to integer proportions with the
    smallest at 100), and each source is read in its own seeded shuffle, epoch after epoch.
    Which source a position holds depends on the weights only, so resuming needs only the
    step, as for one source.

    As a plain source it is the concatenation of its sources (for class statistics).

    Attributes:
      sources: random-access sources of data-contract examples (any image sizes).
      weights: sampling weights, > 0 (normalised by grain).
      names: one name per source, for metrics and messages.
    """

    def __init__(
        self,
        sources: Sequence[RandomAccessSource],
        *,
        weights: Sequence[float],
        names: Sequence[str],
    ):
        self.sources = tuple(sources)
        self.weights = tuple(float(w) for w in weights)
        self.names = tuple(str(n) for n in names)
        if not self.sources or not len(self.sources) == len(self.weights) == len(self.names):
            raise ValueError(
                f"A mixture needs as many sources, weights and names, got {len(self.sources)}, "
                f"{len(self.weights)} and {len(self.names)}."
            )
        bad = [w for w in self.weights if not (math.isfinite(w) and w > 0)]
        if bad:
            raise ValueError(f"Mixture weights must be finite and > 0, got {self.weights}.")
        if problem := smallest_share_problem(self.weights):
            raise ValueError(f"Mixture weights: {problem}.")
        empty = [n for n, s in zip(self.names, self.sources, strict=True) if len(s) == 0]
        if empty:
            raise ValueError(f"The training source {empty[0]!r} of the mixture has no examples.")
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])
        # Position q -> (source, index in that source's stream) under the interleave.
        self._selection = self.interleave([_Tagged(i) for i in range(len(self.sources))])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixture of {len(self)}")
        i = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self.sources[i][index - int(self._offsets[i])]

    def interleave(self, streams: Sequence[Any]) -> grain.MapDataset:
        """Grain's mix of one stream per source at the mixture's weights: position q of the
        result is drawn from the source that the interleave assigns to q. The one
        computation behind `source_at`, the per-source counts and the training loader.

        Args:
          streams: one random-access stream per source, each ``_MIX_PARENT_LEN`` long (the
            interleave depends on the lengths, so all have the same).
        """
        if any(len(s) != _MIX_PARENT_LEN for s in streams):
            raise ValueError("every stream of a mixture's interleave is _MIX_PARENT_LEN long")
        return grain.MapDataset.mix([grain.MapDataset.source(s) for s in streams], self.weights)

    def source_at(self, position: int) -> int:
        """The index of the source that stream position ``position`` is drawn from."""
        return self._selection[position][0]

    def _examples_before(self, position: int) -> list[int]:
        # A source's stream index at its first position >= `position` counts its earlier
        # positions: a scan of about 1 / (its share) positions, whatever the batch size.
        counts = []
        for i in range(len(self.sources)):
            q = position
            while (found := self._selection[q])[0] != i:
                q += 1
            counts.append(found[1])
        return counts

    def examples_per_source(self, start: int, stop: int) -> dict[str, int]:
        """How many of the stream positions [start, stop) each source gives, by name."""
        before_stop, before_start = self._examples_before(stop), self._examples_before(start)
        return {
            name: b - a for name, b, a in zip(self.names, before_stop, before_start, strict=True)
        }


# Length of each mixed source's stream: grain's mix is as long as its parents allow, and
# positions of a run stay far below this.
_MIX_PARENT_LEN = 2**62


class _Tagged:
    """Source ``value``'s stream as a sequence: index j -> (value, j)."""

    def __init__(self, value: int):
        self._value = value

    def __len__(self) -> int:
        return _MIX_PARENT_LEN

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self._value, index


def source_counter(
    source: RandomAccessSource, *, global_batch_size: int
) -> Callable[[int, int], dict[str, int]] | None:
    """The per-source example counts of training steps, for a mixture (else None).

    Args:
      source: the training source.
      global_batch_size: batch size over all processes.

    Returns:
      None for a plain source; for a ``MixtureSource`` a function
      ``(first_step, last_step) -> {"examples/<name>": count}`` over the global batches of
      steps first_step..last_step (step s trains on batch s - 1).
    """
    if not isinstance(source, MixtureSource):
        return None

    def counts(first_step: int, last_step: int) -> dict[str, int]:
        per_source = source.examples_per_source(
            (first_step - 1) * global_batch_size, last_step * global_batch_size
        )
        return {f"examples/{name}": n for name, n in per_source.items()}

    return counts


# ----------------------------------------------------------------------------
# Argument checks.
# ----------------------------------------------------------------------------


def local_batch_size(
    *, global_batch_size: int, process_count: int = 1, num_local_devices: int = 1
) -> int:
    """Returns the per-process batch size, checking divisibility.

    Args:
      global_batch_size: batch size over all processes.
      process_count: number of JAX processes (hosts).
      num_local_devices: accelerators per process.

    Returns:
      ``global_batch_size // process_count``.

    Raises:
      ValueError: if ``global_batch_size`` is not a positive multiple of
        ``process_count * num_local_devices``.
    """
    if process_count < 1 or num_local_devices < 1:
        raise ValueError(
            f"process_count ({process_count}) and num_local_devices ({num_local_devices}) "
            "must be >= 1."
        )
    per_step = process_count * num_local_devices
    if global_batch_size < 1 or global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of "
            f"process_count * num_local_devices = {process_count} * {num_local_devices} "
            f"= {per_step}."
        )
    return global_batch_size // process_count


def _check_common(
    source: RandomAccessSource,
    image_size: tuple[int, int],
    process_index: int,
    process_count: int,
    layout: str,
) -> tuple[int, int]:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    if not 0 <= process_index < process_count:
        raise ValueError(
            f"process_index={process_index} must be in [0, process_count={process_count})."
        )
    if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
        raise TypeError(
            f"source must support len() and [] (random access), got {type(source).__name__}."
        )
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width


def _ensure_absl_flags_parsed() -> None:
    # grain's worker processes read absl flags (e.g. profiling switches); outside
    # an absl app nobody parses them and grain fails with UnparsedFlagAccessError.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# ----------------------------------------------------------------------------
# Per-example / per-batch transforms shared by train and eval.
# ----------------------------------------------------------------------------


class _ToModelInputs(grain.MapTransform):
    """Keeps image and label ([H, W]), checking the final size."""

    def __init__(self, height: int, width: int):
        self._size = (height, width)

    def map(self, element: Mapping[str, Any]) -> dict[str, np.ndarray]:
        image, label = check_example(element)
        if image.shape[:2] != self._size:
            raise ValueError(
                f"Example {element.get('name', '<unnamed>')!r} is {image.shape[:2]} after the "
                f"transforms, expected {self._size}."
            )
        return {"image": image, "label": label}


class _ApplyLayout(grain.MapTransform):
    """Reshapes a [local_batch, ...] batch to [devices, per_device, ...] (pmap)."""

    def __init__(self, layout: str, num_local_devices: int):
        self._layout = layout
        self._devices = num_local_devices

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._layout == "mesh":
            return batch
        return {k: v.reshape((self._devices, -1) + v.shape[1:]) for k, v in batch.items()}


class _ReleaseSharedMemory(grain.MapTransform):
    """Unlinks the shared memory of a batch from grain's worker processes on arrival.

    A worker process hands each array over in a shared_memory block that grain unlinks
    only when the array is garbage collected, on a background thread: blocks of the last
    batches are still linked when the process exits, and Python's resource tracker warns
    about "leaked shared_memory objects". Unlinking removes only the name: the array keeps
    its mapping until it is freed, and nothing is left behind however the run ends.
    """

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for array in batch.values():
            block = getattr(array, "shm", None)
            if isinstance(block, shared_memory.SharedMemory) and getattr(
                array, "_unlink_on_del", False
            ):
                block.unlink()
                array._unlink_on_del = False  # grain's flag: do not unlink it again
        return batch


# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------

# Batches in the "infinite" training stream: 2**40 steps outlast any run, and
# stay far below sys.maxsize in examples for any realistic batch size.
_STREAM_BATCHES = 2**40


class _HostPositions:
    """Global stream positions of this process's examples, in its reading order.

    Global batch k holds stream positions [k * B, (k + 1) * B) and process p
    reads slice p of it, so this process's example j (batch k = j // L, slot
    t = j % L) is stream position (k * P + p) * L + t. A pure function of j: no
    state, so any batch can be produced first.
    """

    def __init__(self, *, local_batch: int, process_index: int, process_count: int):
        self._local_batch = local_batch
        self._process_index = process_index
        self._process_count = process_count

    def __len__(self) -> int:
        return _STREAM_BATCHES * self._local_batch

    def __getitem__(self, index: int) -> int:
        batch, slot = divmod(index, self._local_batch)
        return (batch * self._process_count + self._process_index) * self._local_batch + slot


class _ShuffledKeys:
    """Stream index j of one source -> (source index, record key): epoch j // N of the
    source's N records is one seeded shuffle of them (grain's ``IndexSampler``, random
    access)."""

    def __init__(self, num_records: int, *, seed: int, source_index: int = 0):
        self._source_index = source_index
        self._order = grain.IndexSampler(
            num_records=num_records,
            shard_options=grain.NoSharding(),
            shuffle=True,
            num_epochs=None,
            seed=seed,
        )

    def __len__(self) -> int:
        return _MIX_PARENT_LEN

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self._source_index, self._order[index].record_key


def _record_at(source: RandomAccessSource, seed: int) -> Any:
    """Stream position -> (source index, record key) for a plain source or a mixture."""
    if not isinstance(source, MixtureSource):
        return _ShuffledKeys(len(source), seed=seed)
    # Each source its own shuffle seed, so sources of equal length are not shuffled alike.
    seeds = np.random.SeedSequence(seed).spawn(len(source.sources))
    return source.interleave(
        [
            _ShuffledKeys(len(s), seed=int(ss.generate_state(1)[0]), source_index=i)
            for i, (s, ss) in enumerate(zip(source.sources, seeds, strict=True))
        ]
    )


class _ExampleAtPosition(grain.MapTransform):
    """Stream position -> the finished (augmented, checked) example there.

    The record at a position comes from ``_record_at``: one seeded global shuffle per
    epoch of a plain source, or grain's mix of the shuffled streams of a mixture's
    sources. The augmentation generator is a Philox keyed by (seed, position) and the
    transforms draw only from it, so an example's augmentation depends on where it sits in
    the stream, never on which process, worker or thread produces it.
    """

    def __init__(
        self,
        source: RandomAccessSource,
        *,
        seed: int,
        transforms: list[grain.MapTransform | grain.RandomMapTransform],
        height: int,
        width: int,
    ):
        self._sources = source.sources if isinstance(source, MixtureSource) else (source,)
        self._seed = seed
        self._transforms = transforms
        self._finish = _ToModelInputs(height, width)
        self._records = _record_at(source, seed)

    def map(self, element: int) -> dict[str, np.ndarray]:
        position = int(element)
        source_index, key = self._records[position]
        example = self._sources[source_index][key]
        rng = np.random.Generator(np.random.Philox(key=(self._seed << 64) | position))
        for transform in self._transforms:
            if isinstance(transform, grain.RandomMapTransform):
                example = transform.random_map(example, rng)
            else:
                example = transform.map(example)
        return self._finish.map(example)


def create_train_loader(
    source: RandomAccessSource,
    *,
    global_batch_size: int,
    image_size: tuple[int, int],
    seed: int,
    augment: AugmentConfig | Mapping[str, Any] | bool | None = True,
    worker_count: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_local_devices: int = 1,
    layout: str = "mesh",
    worker_buffer_size: int = 2,
    read_options: grain.ReadOptions | None = None,
    start_step: int = 0,
) -> grain.IterDataset:
    """Creates the infinite, shuffled, augmented, per-host-sharded training stream.

    Batch k is a pure function of (source, seed, global batch size, k): every
    epoch is one global shuffle of all records; global batch k holds stream
    positions [k*B, (k+1)*B) and process p takes slice p of it (B/P examples);
    augmentation is keyed by stream position. So the global batches are the same
    for any number of processes and worker processes, and resuming needs only
    the step: a loader created with ``start_step=k`` yields batches k, k+1, ...
    exactly as a loader started at 0 does after k batches. Epochs follow each
    other without a gap, so batches can straddle an epoch boundary and every
    batch is full.

    A ``MixtureSource`` gives one stream of its sources: position q holds an example of
    the source grain's mix assigns to q, each source read in its own shuffle; each
    example is resized or cropped to ``image_size`` by the transforms before batching, so
    the sources may have any image sizes.

    Args:
      source: random-access source of data-contract examples, or a ``MixtureSource``.
      global_batch_size: batch size over all processes.
      image_size: output (height, width).
      seed: shuffling and augmentation seed, 0 <= seed < 2**32.
      augment: an ``AugmentConfig``, a mapping / ConfigDict of its fields, True
        (defaults) or False / ``{"enabled": False}`` (plain resize).
      worker_count: worker processes decoding and augmenting batches (0 = in
        this process). Batches do not depend on it.
      process_index: index of this process (``jax.process_index()``).
      process_count: number of processes (``jax.process_count()``).
      num_local_devices: devices of this process (``jax.local_device_count()``).
      layout: "pmap" ([devices, per_device_batch, ...]) or "mesh"
        ([local_batch, ...]).
      worker_buffer_size: batches each worker process prepares ahead.
      read_options: threads per process (in-process, or in each worker) that
        build batches, and how many batches they keep ready (default: 8
        threads in-process, 2 per worker process).
      start_step: index of the first batch to yield: the number of training
        steps already taken.

    Returns:
      A ``grain.IterDataset``; ``iter()`` of it yields {"image", "label"}
      batches forever (close the iterator to stop worker processes early).

    Raises:
      ValueError: on indivisible batch sizes, bad indices, seeds, layouts or
        start steps, or an empty source.
    """
    height, width = _check_common(source, image_size, process_index, process_count, layout)
    batch = local_batch_size(
        global_batch_size=global_batch_size,
        process_count=process_count,
        num_local_devices=num_local_devices,
    )
    _check_stream_args(source, seed=seed, worker_count=worker_count, start_step=start_step)
    positions = _HostPositions(
        local_batch=batch, process_index=process_index, process_count=process_count
    )
    example_at = _ExampleAtPosition(
        source,
        seed=int(seed),
        transforms=build_train_transforms(height=height, width=width, augment=augment),
        height=height,
        width=width,
    )
    # A MapDataset indexed by step: element k is this process's batch k.
    by_step = (
        grain.MapDataset.source(positions)
        .map(example_at)
        .batch(batch, drop_remainder=True)
        .map(_ApplyLayout(layout, num_local_devices))
    )
    # Each element is a whole batch: worker w of W builds batches start + w, start + w + W,
    # ... and grain interleaves them round-robin, so the order is the step order.
    stream = by_step.slice(slice(int(start_step), None)).to_iter_dataset(
        read_options or _default_read_options(worker_count)
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        stream = stream.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        ).map(_ReleaseSharedMemory())
    return stream


def _check_stream_args(
    source: RandomAccessSource, *, seed: Any, worker_count: int, start_step: Any
) -> None:
    """Raises ValueError for a bad seed, worker count or start step, or an empty source."""
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    if not isinstance(start_step, (int, np.integer)) or not 0 <= start_step < _STREAM_BATCHES:
        raise ValueError(f"start_step must be an integer in [0, 2**40), got {start_step!r}.")
    if len(source) == 0:
        raise ValueError("The training source has no examples.")


def _default_read_options(worker_count: int) -> grain.ReadOptions:
    # Each thread builds whole batches: PNG decoding and PIL resampling release the GIL,
    # so in-process several batches are built in parallel. With worker processes, a
    # couple of threads per worker keep it busy and more only contend for the cores.
    threads = 8 if worker_count == 0 else 2
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def num_eval_batches(*, num_examples: int, global_batch_size: int) -> int:
    """Returns the number of eval batches (every process yields this many).

    Args:
      num_examples: examples in the split.
      global_batch_size: batch size over all processes.

    Returns:
      ``ceil(num_examples / global_batch_size)``.
    """
    if num_examples < 0 or global_batch_size < 1:
        raise ValueError(
            f"Need num_examples >= 0 and global_batch_size >= 1, got {num_examples}, "
            f"{global_batch_size}."
        )
    return math.ceil(num_examples / global_batch_size)


class _EvalSlots:
    """This process's eval slots: real examples (mask True) or padding (False).

    Global batch b is the concatenation over processes p of slots
    ``b * G + p * L + t`` (t < L); slots >= num_examples are padding, so only the
    last global batch is partial and processes with higher index may get whole
    padding batches, but all processes have the same number of batches.
    """

    def __init__(
        self,
        source: RandomAccessSource,
        *,
        height: int,
        width: int,
        process_index: int,
        global_batch: int,
        local_batch: int,
        num_batches: int,
        resize_method: str,
    ):
        self._source = source
        self._num_examples = len(source)
        self._offset = process_index * local_batch
        self._global, self._local = global_batch, local_batch
        self._len = num_batches * local_batch
        self._resize = Resize(height, width, method=resize_method)
        self._finish = _ToModelInputs(height, width)
        self._height, self._width = height, width

    def __len__(self) -> int:
        return self._len

    def _image_kind(self) -> tuple[int, np.dtype]:
        """(bands, dtype) of the source's images, for padding slots (batches must stack)."""
        if getattr(self, "_kind", None) is None:
            first = np.asarray(self._source[0]["image"]) if self._num_examples else None
            self._kind = (3, np.uint8) if first is None else (first.shape[-1], first.dtype)
        return self._kind

    def example_index(self, slot: int) -> int:
        b, t = divmod(slot, self._local)
        return b * self._global + self._offset + t

    def __getitem__(self, slot: int) -> dict[str, np.ndarray]:
        index = self.example_index(slot)
        if index < self._num_examples:
            example = self._finish.map(self._resize.map(self._source[index]))
            example["mask"] = np.True_
            return example
        bands, dtype = self._image_kind()  # padding holds the data's kind: batches stack
        return {
            "image": np.zeros((self._height, self._width, bands), dtype),
            "label": np.full((self._height, self._width), IGNORE_LABEL, np.uint8),
            "mask": np.False_,
        }


def create_eval_batches(
    source: RandomAccessSource,
    *,
    global_batch_size: int,
    image_size: tuple[int, int],
    process_index: int = 0,
    process_count: int = 1,
    num_local_devices: int = 1,
    layout: str = "mesh",
    worker_count: int = 0,
    read_threads: int = 4,
    resize_method: str = "bilinear",
) -> Iterator[dict[str, np.ndarray]]:
    """Returns a fresh finite iterator over one deterministic, padded pass of ``source``.

    Every example appears exactly once over all processes (mask True); padding
    slots have a zero image, an all-255 label and mask False. Each process yields
    ``num_eval_batches(num_examples=len(source), global_batch_size=...)``
    batches, whole padding batches included, so collectives stay in step.
    Images are resized to ``image_size`` (no augmentation).

    Args:
      source: random-access source of data-contract examples.
      global_batch_size: batch size over all processes.
      image_size: output (height, width).
      process_index: index of this process.
      process_count: number of processes.
      num_local_devices: devices of this process.
      layout: "pmap" or "mesh" (see module docstring).
      worker_count: grain worker processes (0 = in this process).
      read_threads: threads loading batches in each process.
      resize_method: image filter, "bilinear" or "area" (labels: NEAREST).

    Returns:
      An iterator of {"image", "label", "mask"} batches.

    Raises:
      ValueError: on indivisible batch sizes, bad indices or layouts.
    """
    height, width = _check_common(source, image_size, process_index, process_count, layout)
    batch = local_batch_size(
        global_batch_size=global_batch_size,
        process_count=process_count,
        num_local_devices=num_local_devices,
    )
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    slots = _EvalSlots(
        source,
        height=height,
        width=width,
        process_index=process_index,
        global_batch=global_batch_size,
        local_batch=batch,
        num_batches=num_eval_batches(num_examples=len(source), global_batch_size=global_batch_size),
        resize_method=resize_method,
    )
    if len(slots) == 0:
        return iter(())
    layout_fn = _ApplyLayout(layout, num_local_devices)
    # Batching before to_iter_dataset makes each batch one element, so worker
    # processes handle whole batches and the order cannot depend on worker_count.
    ds = grain.MapDataset.source(slots).batch(batch).map(layout_fn.map)
    # Each element is a whole batch: as many in flight as threads reading them.
    ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=max(2, read_threads))
    )
    if worker_count > 0:
        _ensure_absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
        ds = ds.map(_ReleaseSharedMemory())
    return iter(ds)
