"""Opening a prepared TFDS data set (array_record, no TensorFlow): splits and classes."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from unet_jax.data import cloud_data
from unet_jax.data.class_stats import ClassStats, label_counts
from unet_jax.data.classes import ClassSet, ClassSetError, apply_void
from unet_jax.data.splits import SPLITS
from unet_jax.errors import ConfigError, UserError


@dataclasses.dataclass(frozen=True)
class Builders:
    """The data set builders as the library sees them: ``datasets.prepare_dataset``.

    The builders live outside the library (the repository's ``datasets/``, never
    installed), so the commands pass this in and the library never imports them. Called
    as ``builders(config, prepare=True)`` it returns the tfds builder of
    ``config.dataset``, prepared when needed (``prepare=False``: only opened).

    Attributes:
      open: ``(config, *, prepare) -> tfds builder``.
      families: what ``config.dataset`` may start with (``lyft_udacity``, ``aerial``...).
      usage: how to name a data set, for the error message of an unknown one.
      full_resolution: a data set's name -> its full-size counterpart's (or itself).
    """

    open: Callable[..., Any]
    families: tuple[str, ...]
    usage: str
    full_resolution: Callable[[str], str]

    def __call__(self, config: ml_collections.ConfigDict, *, prepare: bool = True) -> Any:
        return self.open(config, prepare=prepare)

    def check_name(self, dataset: str, *, field: str = "config.dataset") -> None:
        """Raises ConfigError unless ``dataset`` names one of the builders' families.

        Args:
          dataset: a data set name, e.g. ``lyft_udacity/full``.
          field: where the name comes from, for the message.
        """
        if str(dataset).partition("/")[0] not in self.families:
            raise ConfigError(f"{field}={dataset!r}: {self.usage}")


PrepareFn = Builders  # the name of the parameter that takes it, ``prepare_fn``


class NotPreparedError(UserError, FileNotFoundError):
    """The data set is not prepared and this caller may not prepare it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An opened data set.

    Attributes:
      sources: {split: random-access source of example dicts}.
      classes: the data set's class declaration.
      train_stats: per-class pixel statistics of the training split
        (``pixel_counts``, ``present_pixel_counts``), or None when not recorded.
      name: e.g. ``lyft_udacity/synthetic`` or ``folder/<name>``.
      image_info: ``{"bands", "dtype", "stats"}`` of images stored as they are (folder
        data sets), None for 8-bit RGB PNGs (the other builders).
    """

    sources: dict[str, Any]
    classes: ClassSet
    train_stats: dict[str, Any] | None
    name: str
    image_info: dict[str, Any] | None = None


def builder_classes(builder: Any) -> ClassSet:
    """The class set a prepared builder declares in its metadata."""
    metadata = builder.info.metadata or {}
    if "classes" not in metadata:
        raise NotPreparedError(
            f"{builder.info.full_name} in {builder.data_dir} declares no classes; prepare it "
            "again with this version"
        )
    return ClassSet.from_json(metadata["classes"], where=f"{builder.info.full_name} metadata")


def open_dataset(
    config: ml_collections.ConfigDict,
    *,
    splits: Sequence[str] = SPLITS,
    prepare_fn: PrepareFn,
) -> Dataset:
    """Opens the splits of ``config.dataset``, preparing it first if needed.

    With several processes, process 0 prepares while the others wait, so a shared
    filesystem is written once.

    Args:
      config: the run config (``dataset``, ``data_dir``, ``manual_dir``, ``folder``...).
      splits: the split names to open.
      prepare_fn: see `PrepareFn`.

    Returns:
      The opened `Dataset`.

    Raises:
      FileNotFoundError: the data set is not prepared and cannot be (see the message).
      ValueError: a split that the data set does not have.
    """
    # Data in a bucket is copied to each process' own cache, where each one prepares it.
    config, per_process = cloud_data.localize(config)
    if jax.process_index() == 0 or per_process:
        builder = prepare_fn(config, prepare=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("unet_jax:data_prepared")
    if jax.process_index() != 0 and not per_process:
        builder = prepare_fn(config, prepare=False)
    if not builder.is_prepared():
        raise NotPreparedError(f"{builder.info.full_name} is not prepared in {builder.data_dir}")
    available = set(builder.info.splits.keys())
    missing = [s for s in splits if s not in available]
    if missing:
        raise ConfigError(
            f"{builder.info.full_name} has no split {missing[0]!r}; it has {sorted(available)}"
        )
    sources = builder.as_data_source()
    metadata = builder.info.metadata or {}
    dataset = Dataset(
        sources={split: sources[split] for split in splits},
        classes=builder_classes(builder),
        train_stats=metadata.get("train_stats"),
        name=builder.info.full_name,
        image_info=metadata.get("image_info"),
    )
    declared = (metadata.get("mask_rule") or {}).get("void") or ()
    return with_void(dataset, (*declared, *(config.get("void_classes") or ())))


class VoidLabels:
    """A source whose labels go through a lookup table (void classes to the ignore value,
    the other ids compacted); picklable for grain's worker processes."""

    def __init__(self, source: Any, lut: np.ndarray):
        self._source = source
        self._lut = lut

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = dict(self._source[index])
        example["label"] = self._lut[np.asarray(example["label"])]
        return example


def with_void(dataset: Dataset, void: Sequence[str]) -> Dataset:
    """The data set with the classes named in ``void`` made void (``classes.apply_void``).

    Its labels are remapped as they are read; the recorded pixel statistics no longer
    apply, so they are dropped (class weights then count the remapped split).

    Raises:
      ConfigError: a void name that is no class of the data set, or no class left.
    """
    void = tuple(dict.fromkeys(str(v) for v in void))
    if not void:
        return dataset
    try:
        classes, lut = apply_void(dataset.classes, void)
    except ClassSetError as e:
        raise ConfigError(f"{dataset.name}: {e}") from None
    return dataclasses.replace(
        dataset,
        sources={k: VoidLabels(v, lut) for k, v in dataset.sources.items()},
        classes=classes,
        train_stats=None,
    )


def scan_class_stats(source: Any, num_classes: int) -> dict[str, Any]:
    """Per-class pixel statistics of a split by reading every label (for data sets
    prepared without them); the fields of ``Dataset.train_stats``."""
    stats = ClassStats()
    for i in range(len(source)):
        stats.add(label_counts(source[i]["label"]))
    return stats.to_metadata(num_classes)


class InMemorySource:
    """A split's decoded examples held in memory: random access without decoding.

    The arrays are read-only, so a transform that wrote into them in place (and would
    change every later epoch) fails loudly instead.
    """

    def __init__(self, examples: list[dict[str, Any]]):
        self._examples = examples

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._examples[index])


def _read_only(example: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in example.items():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        out[key] = value
    return out


def decoded_bytes(example: dict[str, Any]) -> int:
    """The decoded size of one example (its arrays)."""
    return sum(v.nbytes for v in example.values() if isinstance(v, np.ndarray))


def in_memory(source: Any, *, budget_mb: float) -> Any:
    """The split decoded into memory when it fits ``budget_mb``, else ``source`` as it is.

    The size is estimated from the first example times the number of examples, so a large
    data set is never read twice. Examples are decoded by a few threads (PNG decoding
    releases the GIL).

    Args:
      source: a random-access source of example dicts (a TFDS data source).
      budget_mb: the largest decoded size, in MiB, to hold (0 or less: never).

    Returns:
      An `InMemorySource` with the same examples in the same order, or ``source``.
    """
    n = len(source)
    if n == 0 or budget_mb <= 0 or isinstance(source, InMemorySource):
        return source
    first = source[0]
    if decoded_bytes(first) * n > budget_mb * 2**20:
        return source
    threads = min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        rest = list(pool.map(source.__getitem__, range(1, n)))
    return InMemorySource([_read_only(e) for e in [first, *rest]])
