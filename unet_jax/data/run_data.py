"""The data of a training run: its splits, its classes, and the config made to agree.

The data set decides the class count; a config that says otherwise, or a workdir whose
checkpoints were trained on other classes, is refused before any training.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from unet_jax.data import sources as data_sources
from unet_jax.data.classes import ClassSet
from unet_jax.errors import UserError


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


def open_training_data(
    config: ml_collections.ConfigDict,
    *,
    prepare_fn: data_sources.PrepareFn | None,
    sources: dict[str, Any] | None,
    classes: ClassSet | None,
) -> tuple[ml_collections.ConfigDict, dict[str, Any], ClassSet, dict[str, Any] | None]:
    """Opens (preparing if needed) the train and validation splits and their classes.

    Returns:
      ``(config with num_classes from the data, sources, classes, train pixel stats)``.
    """
    stats = None
    if sources is None:
        dataset = data_sources.open_dataset(
            config, splits=("train", "validation"), prepare_fn=prepare_fn
        )
        sources, classes, stats = dataset.sources, dataset.classes, dataset.train_stats
        # Small data sets are decoded once: a crop then costs the crop, not its whole image.
        budget = config.get("in_memory_mb", 0)
        sources = {s: data_sources.in_memory(src, budget_mb=budget) for s, src in sources.items()}
    elif classes is None:
        if config.num_classes is None:
            raise DataConfigError("config.num_classes is needed with in-memory sources")
        classes = ClassSet.numbered(config.num_classes)
    config = with_data_classes(config, classes)
    if isinstance(config.class_weights, str) and stats is None:
        stats = data_sources.scan_class_stats(sources["train"], classes.num_classes)
    return config, sources, classes, stats
