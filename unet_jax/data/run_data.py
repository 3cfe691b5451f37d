"""The data of a training run: its splits, its classes, and the config made to agree.

The data set decides the class count; a config that says otherwise, or a workdir whose
checkpoints were trained on other classes, is refused before any training. A mixture
(``config.mixture``) trains on several data sets of one class set at once and validates
on the first.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from unet_jax.data import normalisation
from unet_jax.data import sources as data_sources
from unet_jax.data.augment import check_for_images
from unet_jax.data.augment_defaults import RGB_SATURATION
from unet_jax.data.classes import ClassSet
from unet_jax.data.image_files import is_rgb8
from unet_jax.data.pipeline import MixtureSource, smallest_share_problem
from unet_jax.errors import ConfigError, UserError


class DataConfigError(UserError, ValueError):
    """The config disagrees with the data set (e.g. ``num_classes``); names field and value."""


def with_data_classes(
    config: ml_collections.ConfigDict, classes: ClassSet
) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``num_classes`` is the data set's.

    Raises:
      DataConfigError: ``config.num_classes`` is set and differs from the data set's.
    """
    if config.num_classes is not None and int(config.num_classes) != classes.num_classes:
        raise DataConfigError(
            f"config.num_classes={config.num_classes}, but the data set declares "
            f"{classes.num_classes} classes ({', '.join(classes.names)}); drop the override "
            "(the data set decides) or use another data set"
        )
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.num_classes = classes.num_classes
    return config


def with_data_images(
    config: ml_collections.ConfigDict, image_info: dict[str, Any] | None
) -> ml_collections.ConfigDict:
    """A copy of ``config`` whose ``model.in_channels``, ``input_dtype``, ``input_norm`` and
    ``input_stats`` are the data's (None ``image_info``: 8-bit RGB), and whose unset
    ``augment.saturation`` is resolved (0.2 on 8-bit RGB, else 0).

    Raises:
      DataConfigError: ``config.model.in_channels`` or ``input_dtype`` is set and differs
        from the data's, or ``input_norm`` is "imagenet" for images that are not 8-bit RGB.
    """
    info = image_info or {"bands": 3, "dtype": "uint8", "stats": None}
    bands, dtype = int(info["bands"]), str(info["dtype"])
    m = config.model
    for field, value in (("in_channels", bands), ("input_dtype", dtype)):
        if m.get(field) is not None and m.get(field) != value:
            raise DataConfigError(
                f"config.model.{field}={m.get(field)!r}, but the data set's images have "
                f"{bands} band(s) of {dtype}; drop the override (the data set decides)"
            )
    rule = m.get("input_norm") or normalisation.default_rule(bands, dtype)
    if rule == "imagenet" and not is_rgb8(bands, dtype):
        raise DataConfigError(
            f"config.model.input_norm='imagenet' is for 8-bit RGB; the data set's images "
            f"have {bands} band(s) of {dtype}: use 'zscore'"
        )
    if rule == "zscore" and not info.get("stats"):
        raise DataConfigError(
            "config.model.input_norm='zscore' needs the per-band statistics that a folder "
            "data set records when it is prepared; this data set has none"
        )
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.model.in_channels = bands
        config.model.input_dtype = dtype
        config.model.input_norm = rule
        config.model.input_stats = dict(info["stats"]) if rule == "zscore" else None
        if config.augment.get("saturation") is None:
            config.augment.saturation = RGB_SATURATION if is_rgb8(bands, dtype) else 0.0
    check_for_images(config.augment, rgb=is_rgb8(bands, dtype))
    return config


def check_resumed_classes(
    meta: dict[str, Any], classes: ClassSet, *, workdir: pathlib.Path
) -> None:
    """Refuses to resume a run whose checkpoint was trained on other classes.

    Raises:
      DataConfigError: the checkpoint's class names differ from the data set's.
    """
    if "classes" not in meta:  # checkpoints from before classes were recorded
        return
    stored = ClassSet.from_json(meta["classes"]).names
    if stored != classes.names:
        raise DataConfigError(
            f"{workdir}: its checkpoints were trained on the classes {list(stored)}, but the "
            f"data set now declares {list(classes.names)}; train in a new workdir (or use "
            "--config.init_from to start from this run)"
        )


def parse_mixture(value: Any) -> tuple[tuple[str, float], ...] | None:
    """``config.mixture`` as ``((data set, weight), ...)``, or None when it is unset.

    Raises:
      ConfigError: not a non-empty sequence of (name, weight > 0) pairs of distinct names.
    """
    if value is None:
        return None
    usage = (
        "a sequence of (data set, weight) pairs, e.g. "
        '(("lyft_udacity/full", 0.6), ("lyft_udacity/synthetic", 0.4))'
    )
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"config.mixture={value!r}: must be {usage}")
    pairs = []
    for entry in value:
        if isinstance(entry, str) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ConfigError(f"config.mixture entry {entry!r}: must be {usage}")
        name, weight = entry
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config.mixture entry {entry!r}: the data set must be a name")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError(f"config.mixture entry {entry!r}: the weight must be a number")
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"config.mixture entry {entry!r}: the weight must be > 0")
        pairs.append((name, float(weight)))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"config.mixture names a data set twice: {names}")
    if problem := smallest_share_problem([w for _, w in pairs]):
        raise ConfigError(f"config.mixture: {problem}")
    return tuple(pairs)


def check_same_classes(first: str, first_classes: ClassSet, other: str, classes: ClassSet):
    """Refuses a mixture of data sets whose class sets differ.

    Raises:
      DataConfigError: naming both data sets and their classes.
    """
    if classes.names != first_classes.names:
        raise DataConfigError(
            f"config.mixture: {other} declares the classes {list(classes.names)}, but {first} "
            f"declares {list(first_classes.names)}; a mixture needs one class set"
        )


def mixture_stats(stats: Sequence[dict[str, Any]], weights: Sequence[float]) -> dict[str, Any]:
    """Pixel statistics of a mixture's training stream from its sources' statistics.

    Every training example has the same size after the transforms, so a source contributes
    its per-pixel class frequencies (counts over all of its pixels, ignored ones included)
    in proportion to its weight. Class weights depend only on these ratios.
    """
    total_weight = float(sum(weights))
    mixed = {}
    for key in ("pixel_counts", "present_pixel_counts"):
        mixed[key] = sum(
            (w / total_weight)
            * np.asarray(s[key], np.float64)
            / (float(np.sum(s["pixel_counts"])) + float(s.get("ignored_pixels", 0)))
            for s, w in zip(stats, weights, strict=True)
        ).tolist()
    return mixed


def _open_mixture(
    config: ml_collections.ConfigDict,
    mixture: tuple[tuple[str, float], ...],
    *,
    prepare_fn: data_sources.PrepareFn | None,
) -> tuple[ml_collections.ConfigDict, dict[str, Any], ClassSet, dict[str, Any] | None]:
    """Opens every data set of a mixture: its train splits mixed, the first's validation.

    Returns:
      ``(config whose dataset is the first (target) data set, sources, classes, stats)``;
      stats are None unless ``config.class_weights`` names a method.
    """
    budget = config.get("in_memory_mb", 0)
    datasets = []
    for name, _ in mixture:
        one = config.copy_and_resolve_references()
        with one.unlocked():
            one.dataset = name
        splits = ("train", "validation") if not datasets else ("train",)
        datasets.append(data_sources.open_dataset(one, splits=splits, prepare_fn=prepare_fn))
        if len(datasets) > 1:
            check_same_classes(mixture[0][0], datasets[0].classes, name, datasets[-1].classes)
    trains = [data_sources.in_memory(d.sources["train"], budget_mb=budget) for d in datasets]
    weights = [w for _, w in mixture]
    sources = {
        "train": MixtureSource(trains, weights=weights, names=[n for n, _ in mixture]),
        "validation": data_sources.in_memory(datasets[0].sources["validation"], budget_mb=budget),
    }
    stats = None
    if isinstance(config.class_weights, str):
        classes = datasets[0].classes
        per_source = [
            d.train_stats or data_sources.scan_class_stats(t, classes.num_classes)
            for d, t in zip(datasets, trains, strict=True)
        ]
        stats = mixture_stats(per_source, weights)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.dataset = mixture[0][0]  # the target: eval.py scores the run on it
    config = with_data_images(config, datasets[0].image_info)
    return config, sources, datasets[0].classes, stats


def open_training_data(
    config: ml_collections.ConfigDict,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    sources: dict[str, Any] | None,
    classes: ClassSet | None,
) -> tuple[ml_collections.ConfigDict, dict[str, Any], ClassSet, dict[str, Any] | None]:
    """Opens (preparing if needed) the train and validation splits and their classes.

    With ``config.mixture`` the train split is a ``MixtureSource`` of every data set's
    train split, and validation is the first data set's.

    Returns:
      ``(config with num_classes from the data, sources, classes, train pixel stats)``.
    """
    stats = None
    mixture = parse_mixture(config.get("mixture"))
    if sources is None and mixture is not None:
        config, sources, classes, stats = _open_mixture(config, mixture, prepare_fn=prepare_fn)
    elif sources is None:
        dataset = data_sources.open_dataset(
            config, splits=("train", "validation"), prepare_fn=prepare_fn
        )
        sources, classes, stats = dataset.sources, dataset.classes, dataset.train_stats
        config = with_data_images(config, dataset.image_info)
        # Small data sets are decoded once: a crop then costs the crop, not its whole image.
        budget = config.get("in_memory_mb", 0)
        sources = {s: data_sources.in_memory(src, budget_mb=budget) for s, src in sources.items()}
    else:
        config = with_data_images(config, image_info_of(config, sources["train"]))
        if classes is None:
            if config.num_classes is None:
                raise DataConfigError("config.num_classes is needed with in-memory sources")
            classes = ClassSet.numbered(config.num_classes)
    config = with_data_classes(config, classes)
    if isinstance(config.class_weights, str) and stats is None:
        stats = _scan_train_stats(sources["train"], classes.num_classes)
    return config, sources, classes, stats


def image_info_of(config: ml_collections.ConfigDict, source: Any) -> dict[str, Any] | None:
    """The image info of sources given in memory (tests, custom data): the config's, else
    read from the training split (None: 8-bit RGB)."""
    m = config.model
    if m.get("input_stats") is not None:
        return {"bands": m.in_channels, "dtype": m.input_dtype, "stats": m.input_stats}
    first = np.asarray(source[0]["image"])
    bands, dtype = first.shape[-1], first.dtype.name
    if is_rgb8(bands, dtype):
        return None
    pixels = [
        normalisation.sample_pixels(np.asarray(source[i]["image"])) for i in range(len(source))
    ]
    return {
        "bands": bands,
        "dtype": dtype,
        "stats": normalisation.band_stats(np.concatenate(pixels)),
    }


def _scan_train_stats(source: Any, num_classes: int) -> dict[str, Any]:
    """Pixel statistics of a training source by reading it (a mixture's: weighted)."""
    if isinstance(source, MixtureSource):
        return mixture_stats(
            [data_sources.scan_class_stats(s, num_classes) for s in source.sources],
            source.weights,
        )
    return data_sources.scan_class_stats(source, num_classes)
