"""Deterministic train/validation/test split, grouped by driving episode.

Kaggle frames are named ``PP_EE_FFF.png`` (e.g. ``02_00_000.png``): EE is the
episode, FFF the frame; consecutive frames of one episode are dealt across the
folders dataA..dataE. Neighbouring frames are near-duplicates, so all frames
of an episode go to the same split. The group key is the EE field alone (the
data folder and the PP field are not part of it): merging frames into fewer,
larger groups can never put one episode into two splits.

Names of other schemes: ``F<N>-<frame>.png`` (community CARLA captures) are
grouped by ``F<N>``. Any other name that ends in a frame number (a user's own
recording, ``stream1-000_0021.png``; the 2018 ``Train/123.png``) belongs to a
recording: its folder plus the name without the number. Each recording is cut,
in frame order, into three contiguous blocks, 60/20/20 (`split_recording`), so
near-duplicate neighbours share a split except at the two block boundaries. A
name without a number is its own group. ``split_group`` (a regular expression)
replaces all of this: frames whose names give the same match stay together.

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

from datasets.common.errors import DataError

SPLITS: tuple[str, ...] = ("train", "validation", "test")
FRACTIONS: Mapping[str, float] = {"train": 0.6, "validation": 0.2, "test": 0.2}

_KAGGLE = re.compile(r"^\d+_(\d+)_\d+$")  # PP_EE_FFF
_CAPTURE = re.compile(r"^(F\d+)-\d+$")  # F61-1
_NUMBERED = re.compile(r"^(.*?)(\d+)$")  # a recording's name, then the frame number

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


def recording_of(name: str) -> tuple[str, int] | None:
    """The recording and frame number of a name outside the episode schemes.

    Args:
      name: the frame's name, e.g. ``drive/stream1-000_0021.png``.

    Returns:
      (``drive/stream1-000_``, 21): the folder plus the stem without its trailing
      number, and that number; None when the stem does not end in a number.
    """
    folder, file_name = posixpath.split(name)
    m = _NUMBERED.match(posixpath.splitext(file_name)[0])
    if m is None:
        return None
    return posixpath.join(folder, m.group(1)), int(m.group(2))


def split_recording(
    items: Sequence[T], *, where: str, fractions: Mapping[str, float] = FRACTIONS
) -> dict[str, list[T]]:
    """Cuts one recording, in frame order, into contiguous blocks, one per split.

    The last ``round(fraction * n)`` frames (at least 1) go to the last split, the block
    before them to the one before, and so on; the first split keeps the rest.

    Args:
      items: the recording's frames in frame order.
      where: the recording's name, for the error.
      fractions: split name -> target fraction (ordered).

    Returns:
      split name -> its block of items.

    Raises:
      DataError: too few frames to give every split a block.
    """
    names = list(fractions)
    n = len(items)
    sizes = [max(1, round(fractions[s] * n)) for s in names[1:]]
    first = n - sum(sizes)
    if first < 1:
        raise DataError(
            f"{where}: a recording of {n} frames is too short to cut into {len(names)} "
            f"contiguous blocks ({', '.join(names)}); record at least {len(names)} "
            "frames, or keep whole recordings together with --config.split_group=REGEX"
        )
    out, start = {}, 0
    for split, size in zip(names, [first, *sizes], strict=True):
        out[split] = list(items[start : start + size])
        start += size
    return out


def compile_group(pattern: str | None, *, field: str = "split_group") -> re.Pattern | None:
    """Compiles a grouping regex (``config.<field>``); a bad one is a `DataError` naming it."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise DataError(f"config.{field}={pattern!r}: not a regular expression ({e})") from None


def pattern_key(name: str, pattern: re.Pattern) -> str:
    """The group of ``name`` under ``config.split_group``: its first group (or match)."""
    m = pattern.search(name)
    if m is None:
        raise DataError(f"{name}: the name does not match --config.split_group={pattern.pattern!r}")
    return "group:" + (m.group(1) if pattern.groups else m.group(0))


def split_frames(
    items: Sequence[T],
    name_of: Callable[[T], str],
    *,
    group_pattern: str | None = None,
    fractions: Mapping[str, float] = FRACTIONS,
) -> tuple[dict[str, list[T]], list[str]]:
    """Splits frames by the rule in the module docstring.

    Args:
      items: the frames (any type), e.g. sorted by name.
      name_of: item -> its name (``folder/file.png``).
      group_pattern: ``config.split_group``; None applies the default rule.
      fractions: split name -> target fraction.

    Returns:
      (split name -> items, the lines of a summary: one per recording cut into blocks
      and one for the groups placed whole).

    Raises:
      DataError: a bad or unmatched ``group_pattern``; a recording too short to cut.
    """
    pattern = compile_group(group_pattern)
    grouped: list[T] = []
    recordings: dict[str, list[tuple[int, str, T]]] = {}
    for item in items:
        name = name_of(item)
        found = recording_of(name) if pattern is None else None
        if found is not None and episode_key(name).startswith("frame:"):
            recordings.setdefault(found[0], []).append((found[1], name, item))
            continue
        grouped.append(item)
    key_of = (
        (lambda item: pattern_key(name_of(item), pattern))
        if pattern is not None
        else (lambda item: episode_key(name_of(item)))
    )
    out = split_items(grouped, key_of, fractions)
    summary = []
    if grouped:
        keys = {s: {key_of(item) for item in part} for s, part in out.items()}
        summary.append(
            "groups placed whole: "
            + ", ".join(f"{s} {len(out[s])} frames in {len(keys[s])} groups" for s in out)
        )
    for recording, frames in sorted(recordings.items()):
        frames.sort(key=lambda f: (f[0], f[1]))
        blocks = split_recording(frames, where=f"recording {recording}*", fractions=fractions)
        for split, block in blocks.items():
            out[split] += [item for _, _, item in block]
        summary.append(
            f"recording {recording}* ({len(frames)} frames): "
            + ", ".join(f"{s} frames {b[0][0]}..{b[-1][0]} ({len(b)})" for s, b in blocks.items())
        )
    return out, summary
