"""Class weights for imbalanced data: from per-class pixel counts of the training split.

``config.class_weights`` is one of

- ``None``: uniform (no weights);
- a tuple of ``num_classes`` non-negative floats, used as given;
- ``"inverse_frequency"`` or ``"median_frequency"``: computed by
  :func:`class_weights_from_counts` from counts stored with the prepared data set.

Definitions (``n_c`` = labelled training pixels of class ``c``, ignored pixels excluded)::

    inverse_frequency:  f_c = n_c / sum_k n_k                     w_c = 1 / f_c
    median_frequency:   f_c = n_c / m_c                           w_c = median(f) / f_c
                        m_c = labelled pixels of the training images that contain c

``median_frequency`` is the median-frequency balancing of Eigen & Fergus (ICCV 2015, used
by SegNet): ``f_c`` is a class's frequency *within the images where it appears*, so a class
that is rare only because few images show it is not up-weighted as much as under inverse
frequency.

Both are then rescaled so that they **average 1 over the classes present** (``n_c > 0``):
``w_c = (1 / f_c) / mean_{k present}(1 / f_k)``. Every loss in :mod:`unet_jax.train.losses` is
invariant to a common scale of the weights, so this only makes the numbers readable. It also
removes the factor ``median(f)``, common to all classes: the median class does not keep
weight exactly 1 (Eigen & Fergus's scale), the ratios between classes are theirs.

A class **without any training pixel** gets weight **0**: there is no pixel for a weight
to act on in the cross-entropy or focal terms, and its Dice term (which would only
push its probability towards 0) is left out of the weighted class mean. Weights are never
inf or NaN.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from unet_jax.errors import ConfigError

METHODS = ("inverse_frequency", "median_frequency")


def _as_counts(name: str, counts: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {array.tolist()}")
    return array


def class_weights_from_counts(
    pixel_counts: Sequence[float] | np.ndarray,
    *,
    method: str,
    present_pixel_counts: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Per-class loss weights from training-split pixel counts (see the module docstring).

    Args:
        pixel_counts: ``[C]`` number of labelled training pixels of each class (ignored
            pixels and ids ``>= C`` not counted).
        method: ``"inverse_frequency"`` or ``"median_frequency"``.
        present_pixel_counts: ``[C]``, needed for ``"median_frequency"`` only: for each
            class ``c``, the total number of labelled pixels (all classes) of the training
            images that contain at least one pixel of ``c``. So
            ``pixel_counts[c] <= present_pixel_counts[c]``, and both are 0 together.

    Returns:
        float32 ``[C]``: finite, >= 0, 0 for classes without pixels, mean 1 over the others.

    Raises:
        ValueError: Unknown ``method``; counts not 1-D, negative or non-finite; no labelled
            pixel at all; ``present_pixel_counts`` missing (median frequency), of another
            length, or smaller than ``pixel_counts``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown class-weight method {method!r}; expected one of {METHODS}")
    counts = _as_counts("pixel_counts", pixel_counts)
    present = counts > 0
    if not np.any(present):
        raise ValueError("pixel_counts are all 0: the training split has no labelled pixel")

    if method == "inverse_frequency":
        frequency = counts / counts.sum()
    else:
        if present_pixel_counts is None:
            raise ValueError("median_frequency needs present_pixel_counts")
        totals = _as_counts("present_pixel_counts", present_pixel_counts)
        if totals.shape != counts.shape:
            raise ValueError(
                f"present_pixel_counts has {totals.size} entries, pixel_counts {counts.size}"
            )
        if np.any(totals < counts):
            raise ValueError(
                "present_pixel_counts must be >= pixel_counts for every class (a class's "
                f"pixels lie in the images that contain it), got {totals.tolist()} for "
                f"pixel_counts {counts.tolist()}"
            )
        # Safe divisor: totals >= counts > 0 wherever the class is present.
        frequency = counts / np.where(present, totals, 1.0)

    raw = np.zeros_like(counts)
    # Median frequency's factor median(f) is common to all classes, so after the rescaling
    # below both methods are 1 / f_c; they differ only in how f_c is defined.
    raw[present] = 1.0 / frequency[present]
    weights = raw / raw[present].mean()
    return weights.astype(np.float32)


def resolve_class_weights(
    value: object,
    *,
    num_classes: int,
    pixel_counts: Sequence[float] | np.ndarray | None = None,
    present_pixel_counts: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray | None:
    """Turns ``config.class_weights`` into ``None`` or a float32 ``[num_classes]`` array.

    Args:
        value: ``config.class_weights``: ``None``, a sequence of ``num_classes``
            non-negative numbers (not all 0), ``"inverse_frequency"`` or
            ``"median_frequency"``.
        num_classes: Number of classes ``C`` of the model.
        pixel_counts: ``[C]`` labelled pixels per class of the training split (the data
            set's stored counts); needed for the two method names.
        present_pixel_counts: ``[C]`` labelled pixels of the training images containing
            each class; needed for ``"median_frequency"``.

    Returns:
        ``None`` (uniform) or float32 ``[num_classes]`` weights.

    Raises:
        ValueError: Naming ``config.class_weights`` and the value: an unknown name, a
            method without the counts it needs, counts of another length than
            ``num_classes``, a wrong number of explicit weights, a negative, non-finite or
            non-numeric weight, or all weights 0.
    """
    where = f"config.class_weights={value!r}"
    if value is None:
        return None
    if isinstance(value, str):
        if value not in METHODS:
            raise ConfigError(
                f"{where}: unknown name; expected None, a tuple of {num_classes} floats or "
                f"one of {METHODS}"
            )
        if pixel_counts is None or (value == "median_frequency" and present_pixel_counts is None):
            needed = "pixel_counts" + (
                " and present_pixel_counts" if value == "median_frequency" else ""
            )
            raise ConfigError(
                f"{where} needs the training split's per-class {needed}, which this data "
                "set does not provide; prepare the data again or give explicit weights"
            )
        for name, counts in (
            ("pixel_counts", pixel_counts),
            ("present_pixel_counts", present_pixel_counts),
        ):
            if counts is not None and np.shape(counts) != (num_classes,):
                raise ConfigError(
                    f"{where}: the data set's {name} has shape {np.shape(counts)}, expected "
                    f"({num_classes},) for num_classes={num_classes}"
                )
        try:
            return class_weights_from_counts(
                pixel_counts, method=value, present_pixel_counts=present_pixel_counts
            )
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None

    elements = value.tolist() if isinstance(value, np.ndarray) else value
    if not isinstance(elements, Sequence) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in elements
    ):
        raise ConfigError(
            f"{where}: expected None, a tuple of {num_classes} floats or one of {METHODS}"
        )
    weights = np.asarray(value, np.float64)
    if weights.shape != (num_classes,):
        raise ConfigError(
            f"{where}: expected {num_classes} weights (num_classes={num_classes}), "
            f"got shape {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ConfigError(f"{where}: weights must be finite and >= 0")
    if not np.any(weights > 0):
        raise ConfigError(f"{where}: at least one weight must be > 0")
    return weights.astype(np.float32)
