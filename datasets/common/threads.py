"""How builders spread decoding and encoding over threads while they prepare a data set.

PNG/JPEG decoding and encoding (zlib, libjpeg) and numpy release the GIL, so threads use
several cores without the start-up cost and fork-safety issues of processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from unet_jax.data.image_ops import ordered_thread_map
from unet_jax.errors import UserError

WORKERS_ENV = "LYFT_UDACITY_WORKERS"  # the name predates the other builders; kept for users


def num_workers() -> int:
    """Threads preparing examples: ``$LYFT_UDACITY_WORKERS``, else the usable cores."""
    if value := os.environ.get(WORKERS_ENV):
        try:
            return max(1, int(value))
        except ValueError:
            raise UserError(f"{WORKERS_ENV} must be an integer, not {value!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threaded_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """``map(fn, items)`` in order on `num_workers` threads, 4 tasks per thread in flight."""
    workers = num_workers()
    return ordered_thread_map(fn, items, depth=4 * workers, workers=workers)
