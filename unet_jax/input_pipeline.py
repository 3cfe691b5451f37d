"""grain input pipelines: infinite shuffled training batches and padded eval batches.

Sources are random-access: anything with ``__len__`` and ``__getitem__(i)``
returning an example of the data contract (``image`` uint8 [H, W, 3], ``label``
uint8 [H, W, 1] with class ids and 255 = ignore, ``name``); in training that is
``tfds.builder(...).as_data_source()[split]`` (an ArrayRecordDataSource that
decodes the PNGs). Sources must be picklable when ``worker_count > 0``.

Batches are dicts of numpy arrays:

* ``image``: uint8 [..., H, W, 3], NOT normalised. Converting to float and
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

Determinism. The training stream is a pure function of (source length, seed,
batch size, process index/count): grain's ``DataLoader`` normally batches inside
each worker process, so the batches would depend on ``worker_count``; this
module's sampler reorders the record stream so that worker w's k-th batch is
exactly batch ``k * worker_count + w`` of the in-process stream. Random
augmentation draws from a per-example generator keyed by (seed, position in the
stream). Hence batches are identical for any ``worker_count``, and
``iterator_state_to_json`` / ``restore_iterator_state`` even resume a stream
under a different ``worker_count``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import grain.python as grain
import numpy as np
from absl import flags

from unet_jax.augment import AugmentConfig, Resize, build_train_transforms, check_example
from unet_jax.classes import IGNORE_LABEL

__all__ = [
    "AugmentConfig",
    "RandomAccessSource",
    "StatefulIterator",
    "create_eval_batches",
    "create_train_loader",
    "iterator_state_to_json",
    "local_batch_size",
    "num_eval_batches",
    "restore_iterator_state",
]

LAYOUTS = ("pmap", "mesh")
_SAMPLER_PREFIX = "unet_jax.WorkerInvariantSampler"
_STATE_FORMAT = "unet_jax.input_pipeline.train_state/1"


class StatefulIterator(Protocol):
    """A grain ``DataLoaderIterator``: ``iter(create_train_loader(...))``."""

    def __next__(self) -> dict[str, np.ndarray]: ...

    def get_state(self) -> bytes: ...

    def set_state(self, state: bytes) -> None: ...


class RandomAccessSource(Protocol):
    """What the pipelines need from a data source."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


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


# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------


class _WorkerInvariantSampler:
    """Infinite per-epoch shuffled sampler whose batches ignore ``worker_count``.

    grain's DataLoader with W > 0 workers gives worker w the records at sampler
    positions w, w + W, w + 2W, ... (of this process's shard) and each worker
    batches its own records. This sampler permutes positions so that the k-th
    batch of worker w holds logical positions (k * W + w) * B ... + B - 1, i.e.
    exactly batch k * W + w of the single-process stream; grain then emits the
    workers' batches round-robin, in logical order.

    The per-example random generator is keyed by (seed, logical global position)
    with Philox, so augmentation does not depend on W either.
    """

    def __init__(
        self,
        *,
        num_records: int,
        seed: int,
        shard_options: grain.ShardOptions,
        local_batch_size: int,
        worker_count: int,
    ):
        self._params = {
            "num_records": num_records,
            "seed": seed,
            "shard_index": shard_options.shard_index,
            "shard_count": shard_options.shard_count,
            "local_batch_size": local_batch_size,
            "worker_count": worker_count,
        }
        self._shards = shard_options.shard_count
        self._shard_index = shard_options.shard_index
        self._workers = max(worker_count, 1)
        self._batch = local_batch_size
        self._seed = seed
        # One global shuffle of all records per epoch; each process takes its slice of every
        # global batch (see __getitem__), so the global batches do not depend on the number
        # of processes: 2 hosts x 2 devices train exactly like 1 host x 4 devices.
        self._inner = grain.IndexSampler(
            num_records=num_records,
            shard_options=grain.NoSharding(),
            shuffle=True,
            num_epochs=None,
            seed=seed,
        )

    def __len__(self) -> int:
        return sys.maxsize

    def __repr__(self) -> str:
        # grain stores repr(sampler) in checkpoints and compares it on restore;
        # JSON keeps it parseable for restore_iterator_state.
        return _SAMPLER_PREFIX + json.dumps(self._params, sort_keys=True)

    def __getitem__(self, index: int) -> grain.RecordMetadata:
        shard_index = index % self._shards
        local = index // self._shards
        worker = local % self._workers
        batch_in_worker, pos = divmod(local // self._workers, self._batch)
        local_batch = batch_in_worker * self._workers + worker
        # Position in the global stream: global batch `local_batch`, this shard's slice.
        logical = (local_batch * self._shards + shard_index) * self._batch + pos
        record_key = self._inner[logical].record_key
        rng = np.random.Generator(np.random.Philox(key=(self._seed << 64) | logical))
        return grain.RecordMetadata(index=index, record_key=record_key, rng=rng)


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
) -> grain.DataLoader:
    """Creates the infinite, shuffled, augmented, per-host-sharded training loader.

    Every epoch is one global shuffle of all records; global batch t holds
    stream positions [t*B, (t+1)*B) and process p takes slice p of it (B/P
    examples), so the global batches, and their augmentation (keyed by stream
    position), are the same for any number of processes. Epochs follow each
    other without a gap, so batches can straddle an epoch boundary and every
    batch is full. ``iter(loader)`` returns an iterator with
    ``get_state()`` / ``set_state()``; a restored iterator yields exactly the
    batches an uninterrupted one would.

    Args:
      source: random-access source of data-contract examples.
      global_batch_size: batch size over all processes.
      image_size: output (height, width).
      seed: shuffling and augmentation seed, 0 <= seed < 2**32.
      augment: an ``AugmentConfig``, a mapping / ConfigDict of its fields, True
        (defaults) or False / ``{"enabled": False}`` (plain resize).
      worker_count: grain worker processes (0 = in this process). Batches do
        not depend on it.
      process_index: index of this process (``jax.process_index()``).
      process_count: number of processes (``jax.process_count()``).
      num_local_devices: devices of this process (``jax.local_device_count()``).
      layout: "pmap" ([devices, per_device_batch, ...]) or "mesh"
        ([local_batch, ...]).
      worker_buffer_size: batches each worker prepares ahead.
      read_options: grain read threads / buffer per process (default: 8
        threads in-process, 2 per worker process; a buffer of 2 local batches).

    Returns:
      A ``grain.DataLoader`` yielding {"image", "label"} batches.

    Raises:
      ValueError: on indivisible batch sizes, bad indices, seeds or layouts, or
        a source with fewer records than processes.
    """
    height, width = _check_common(source, image_size, process_index, process_count, layout)
    batch = local_batch_size(
        global_batch_size=global_batch_size,
        process_count=process_count,
        num_local_devices=num_local_devices,
    )
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    num_records = len(source)
    if num_records < process_count:
        raise ValueError(
            f"The source has {num_records} examples, fewer than process_count={process_count}."
        )
    shard_options = grain.ShardOptions(
        shard_index=process_index, shard_count=process_count, drop_remainder=True
    )
    sampler = _WorkerInvariantSampler(
        num_records=num_records,
        seed=int(seed),
        shard_options=shard_options,
        local_batch_size=batch,
        worker_count=worker_count,
    )
    operations = [
        *build_train_transforms(height=height, width=width, augment=augment),
        _ToModelInputs(height, width),
        grain.Batch(batch_size=batch, drop_remainder=True),
        _ApplyLayout(layout, num_local_devices),
    ]
    if worker_count > 0:
        _ensure_absl_flags_parsed()
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=operations,
        worker_count=worker_count,
        worker_buffer_size=worker_buffer_size,
        shard_options=shard_options,
        read_options=read_options or _default_read_options(worker_count, batch),
    )


def _default_read_options(worker_count: int, batch: int) -> grain.ReadOptions:
    # Read threads decode PNGs (PIL releases the GIL) while the iterator thread
    # augments. In-process they are the only parallelism; with worker processes
    # a couple per worker keep it busy and more only contend for the cores.
    return grain.ReadOptions(
        num_threads=8 if worker_count == 0 else 2, prefetch_buffer_size=max(2 * batch, 16)
    )


# Portable iterator state ------------------------------------------------------


def _sampler_params(grain_state: Mapping[str, Any]) -> dict[str, int]:
    sampler = grain_state.get("sampler", "")
    if not sampler.startswith(_SAMPLER_PREFIX):
        raise ValueError(
            f"Iterator state is not from create_train_loader (sampler {sampler[:80]!r})."
        )
    return json.loads(sampler[len(_SAMPLER_PREFIX) :])


def _batches_consumed(grain_state: Mapping[str, Any], params: Mapping[str, int]) -> int:
    """Inverts grain's DataLoader state: number of batches already yielded."""
    shard, shards = params["shard_index"], params["shard_count"]
    workers, batch = grain_state["worker_count"], params["local_batch_size"]
    seen = grain_state["last_seen_indices"]
    if workers == 0:
        elements = (seen["0"] - shard) // shards + 1
    else:
        # Per worker: last_seen = shard - W*S + w*S + next_index_w * W*S.
        glob = workers * shards
        elements = sum((seen[str(w)] + glob - shard - w * shards) // glob for w in range(workers))
    return elements // batch


def _grain_state_for(
    batches: int, params: Mapping[str, int], template: Mapping[str, Any]
) -> dict[str, Any]:
    """Builds grain's DataLoader state after ``batches`` batches for ``template``'s loader."""
    shard, shards = params["shard_index"], params["shard_count"]
    batch = params["local_batch_size"]
    workers = template["worker_count"]
    state = dict(template)
    if workers == 0:
        state["last_seen_indices"] = {"0": shard + (batches * batch - 1) * shards}
        state["last_worker_index"] = -1
        return state
    glob = workers * shards
    seen = {}
    for w in range(workers):
        worker_batches = (batches - w + workers - 1) // workers
        seen[str(w)] = shard - glob + w * shards + worker_batches * batch * glob
    state["last_seen_indices"] = seen
    state["last_worker_index"] = batches % workers - 1
    return state


def iterator_state_to_json(iterator: StatefulIterator) -> str:
    """Serialises a training iterator's position (for checkpoints).

    Args:
      iterator: ``iter(create_train_loader(...))``.

    Returns:
      A JSON string with grain's own state and the number of batches consumed;
      ``restore_iterator_state`` accepts it for any ``worker_count``.
    """
    grain_state = json.loads(iterator.get_state().decode())
    params = _sampler_params(grain_state)
    return json.dumps(
        {
            "format": _STATE_FORMAT,
            "batches_consumed": _batches_consumed(grain_state, params),
            "grain_state": grain_state,
        }
    )


def restore_iterator_state(iterator: StatefulIterator, state_json: str) -> None:
    """Moves a fresh training iterator to a saved position.

    The loader must match the saved one in source length, seed, local batch size
    and process index/count; ``worker_count`` may differ.

    Args:
      iterator: ``iter(create_train_loader(...))``.
      state_json: output of ``iterator_state_to_json``.

    Raises:
      ValueError: if the state is malformed or from an incompatible loader.
    """
    try:
        saved = json.loads(state_json)
        fmt = saved["format"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise ValueError("Not an input-pipeline iterator state (expected JSON).") from None
    if fmt != _STATE_FORMAT:
        raise ValueError(f"Unsupported iterator state format {fmt!r}; expected {_STATE_FORMAT!r}.")
    current = json.loads(iterator.get_state().decode())
    want, have = _sampler_params(saved["grain_state"]), _sampler_params(current)
    diff = {k: (want[k], have[k]) for k in want if k != "worker_count" and want[k] != have.get(k)}
    if diff:
        raise ValueError(f"Iterator state is from a different loader, (saved, current): {diff}.")
    if saved["grain_state"]["worker_count"] == current["worker_count"]:
        state = saved["grain_state"]
    else:
        state = _grain_state_for(saved["batches_consumed"], have, current)
    iterator.set_state(json.dumps(state).encode())


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

    def example_index(self, slot: int) -> int:
        b, t = divmod(slot, self._local)
        return b * self._global + self._offset + t

    def __getitem__(self, slot: int) -> dict[str, np.ndarray]:
        index = self.example_index(slot)
        if index < self._num_examples:
            example = self._finish.map(self._resize.map(self._source[index]))
            example["mask"] = np.True_
            return example
        return {
            "image": np.zeros((self._height, self._width, 3), np.uint8),
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
    return iter(ds)
