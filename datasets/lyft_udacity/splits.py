"""Deterministic train/validation/test split, grouped by driving episode.

Kaggle frames are named ``PP_EE_FFF.png`` (e.g. ``02_00_000.png``): EE is the
episode, FFF the frame; consecutive frames of one episode are dealt across the
folders dataA..dataE. Neighbouring frames are near-duplicates, so all frames
of an episode go to the same split. The group key is the EE field alone (the
data folder and the PP field are not part of it): merging frames into fewer,
larger groups can never put one episode into two splits.

Names of other schemes: ``F<N>-<frame>.png`` (community CARLA captures) are
grouped by ``F<N>``; any other name (e.g. the 2018 ``Train/123.png``) is its
own group, keyed by its file name without folder, so copies of a file in two
folders stay together.

Assignment rule (`assign_splits`): groups are visited in the order of the
SHA-256 hex digest of their key; each goes to the split that is furthest below
its target share of the frames assigned so far (this group included), i.e.
the split maximising ``fraction * (assigned + size) - count``; ties go to
train, then validation, then test. Every split then ends within one group's
size of its 60/20/20 target, and the result depends only on the set of names.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import TypeVar

SPLITS: tuple[str, ...] = ("train", "validation", "test")
FRACTIONS: Mapping[str, float] = {"train": 0.6, "validation": 0.2, "test": 0.2}

_KAGGLE = re.compile(r"^\d+_(\d+)_\d+$")  # PP_EE_FFF
_CAPTURE = re.compile(r"^(F\d+)-\d+$")  # F61-1

T = TypeVar("T")


def episode_key(name: str) -> str:
    """Returns the split group of a frame name.

    Args:
      name: the frame's name, e.g. ``dataA/02_07_123.png``.

    Returns:
      ``episode:07`` for ``PP_07_FFF.png``, ``episode:F61`` for ``F61-3.png``,
      else ``frame:<file name without extension>``.
    """
    stem = posixpath.splitext(posixpath.basename(name))[0]
    if m := _KAGGLE.match(stem):
        return f"episode:{m.group(1)}"
    if m := _CAPTURE.match(stem):
        return f"episode:{m.group(1)}"
    return f"frame:{stem}"


def _order(key: str) -> tuple[str, str]:
    return hashlib.sha256(key.encode("utf-8")).hexdigest(), key


def assign_splits(
    group_sizes: Mapping[str, int], fractions: Mapping[str, float] = FRACTIONS
) -> dict[str, str]:
    """Assigns whole groups to splits so that frame counts follow the fractions.

    Args:
      group_sizes: group key -> number of frames.
      fractions: split name -> target fraction (ordered: ties go to the first).

    Returns:
      group key -> split name.
    """
    # Exact arithmetic, so that ties are real ties (0.6 * 5 - 3 is not 0 in floats).
    weights = {s: Fraction(f).limit_denominator(10**6) for s, f in fractions.items()}
    counts = dict.fromkeys(fractions, 0)
    total = 0
    out = {}
    for key in sorted(group_sizes, key=_order):
        size = group_sizes[key]
        total += size
        split = max(weights, key=lambda s: weights[s] * total - counts[s])
        counts[split] += size
        out[key] = split
    return out


def split_items(
    items: Sequence[T], group_of: Callable[[T], str], fractions: Mapping[str, float] = FRACTIONS
) -> dict[str, list[T]]:
    """Splits items by group with `assign_splits`, keeping their order within a split.

    Args:
      items: the frames (any type).
      group_of: item -> group key (e.g. `episode_key` of its name).
      fractions: split name -> target fraction.

    Returns:
      split name -> items, one (possibly empty) list per split.
    """
    groups = [group_of(item) for item in items]
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    assignment = assign_splits(sizes, fractions)
    out: dict[str, list[T]] = {s: [] for s in fractions}
    for item, g in zip(items, groups, strict=True):
        out[assignment[g]].append(item)
    return out
