"""A run's class set on disk: ``<workdir>/classes.json``, written once by training."""

from __future__ import annotations

import json
import pathlib

from unet_jax import storage
from unet_jax.data.classes import ClassSet, ClassSetError
from unet_jax.run.workdir import Workdir


def write_run_classes(workdir: str | pathlib.Path, class_set: ClassSet) -> pathlib.Path:
    """Writes ``<workdir>/classes.json`` (atomically)."""
    path = Workdir.of(workdir).classes
    storage.write_atomically(path, json.dumps(class_set.to_json(), indent=2) + "\n")
    return path


def read_run_classes(workdir: str | pathlib.Path, *, num_classes: int | None = None) -> ClassSet:
    """The classes of a run: ``<workdir>/classes.json``.

    Runs from before class sets were recorded have no such file: they get
    ``class0..class<C-1>``.

    Args:
      workdir: the run directory.
      num_classes: the run's class count, checked against the file; None: the run's
        ``config.json`` says.

    Returns:
      The class set.

    Raises:
      ClassSetError: the file is unreadable or disagrees with ``num_classes``.
    """
    path = Workdir.of(workdir).classes
    if num_classes is None:
        try:
            config = Workdir.of(workdir).config
            num_classes = int(json.loads(config.read_text())["num_classes"])
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise ClassSetError(f"{path.parent}: no readable config.json ({e})") from None
    if not path.is_file():
        return ClassSet.numbered(num_classes)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ClassSetError(f"{path}: unreadable ({e})") from None
    class_set = ClassSet.from_json(data, where=str(path))
    if class_set.num_classes != num_classes:
        raise ClassSetError(
            f"{path}: {class_set.num_classes} classes, but the run's config.num_classes is "
            f"{num_classes}"
        )
    return class_set
