"""Generic image helpers: padding and tiling geometry, one resize, one ordered thread map.

Pure host-side functions on numpy arrays; nothing here knows about models or runs.
"""

import collections
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

RESIZE_METHODS = {
    "bilinear": Image.Resampling.BILINEAR,  # antialiased when shrinking
    "area": Image.Resampling.BOX,  # exact area averaging
    "nearest": Image.Resampling.NEAREST,
}


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value`` (and >= ``multiple``)."""
    return max(multiple, -(-value // multiple) * multiple)


def pad_widths(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Rows and columns to add (at the bottom and right) to reach multiples of ``multiple``."""
    return round_up(height, multiple) - height, round_up(width, multiple) - width


def pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    """The padding mode for adding ``pad_h`` rows and ``pad_w`` columns to an image.

    Reflection needs more pixels than it adds; tiny images fall back to edge replication.
    """
    return "reflect" if pad_h < height and pad_w < width else "edge"


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``.

    Tiles start every ``stride`` pixels; the last one is moved back to end exactly at
    ``length`` (so every tile lies inside the image and every pixel is covered).

    Args:
      length: the side to cover (>= tile).
      tile: tile side.
      stride: distance between tile starts (1..tile).

    Returns:
      Sorted distinct offsets, the first 0 and the last ``length - tile``.
    """
    if tile > length:
        raise ValueError(f"tile {tile} is larger than the side {length}")
    if not 1 <= stride <= tile:
        raise ValueError(f"stride must be in [1, tile={tile}], got {stride}")
    last = length - tile
    origins = list(range(0, last, stride)) + [last]
    return sorted(set(origins))


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """The tile blending weights: a separable linear ramp over ``overlap`` pixels per edge.

    ``w[y, x] = r_h(y) * r_w(x)`` with ``r(i) = min(1, (i + 1) / (overlap + 1),
    (n - i) / (overlap + 1))``: 1 in the tile's interior, falling towards each edge but
    never reaching 0, so pixels only one tile covers keep a defined value.

    Args:
      height: tile height.
      width: tile width.
      overlap: ramp length in pixels (0: all ones).

    Returns:
      float32 [height, width] weights in (0, 1].
    """

    def ramp(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        r = np.minimum((i + 1) / (overlap + 1), (n - i) / (overlap + 1))
        return np.minimum(1.0, r)

    return np.outer(ramp(height), ramp(width)).astype(np.float32)


def _nearest_indices(n_in: int, n_out: int, *, start: float, stop: float) -> np.ndarray:
    """Source index of each output position under PIL's NEAREST resize of [start, stop)."""
    positions = np.arange(n_in, dtype=np.int32)[None, :]
    resized = Image.fromarray(positions).resize(
        (n_out, 1), Image.Resampling.NEAREST, box=(start, 0.0, stop, 1.0)
    )
    return np.asarray(resized)[0].astype(np.int64)


def resize(
    array: np.ndarray,
    *,
    height: int,
    width: int,
    method: str,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Resamples an image, label map or probability map onto a ``height x width`` grid.

    All resizing in this project goes through here, so images and their labels (or
    predictions) resized with the same ``box`` stay aligned pixel for pixel.

    Args:
      array: [H, W] or [H, W, C], any dtype and number of channels (bands other than
        8-bit grey or RGB are resampled one by one in float32).
      height: output height (>= 1).
      width: output width (>= 1).
      method: "bilinear", "area" or "nearest".
      box: source region (left, upper, right, lower) in pixels, floats allowed; None for
        the whole array.

    Returns:
      The resampled array, same dtype. "nearest" picks exactly the pixels PIL's NEAREST
      picks (PIL's own row and column maps, applied to every channel).

    Raises:
      ValueError: an unknown method or a non-positive size.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; use one of {list(RESIZE_METHODS)}")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"output size must be positive, got height={height}, width={width}")
    h, w = array.shape[:2]
    if box is None:
        if (h, w) == (height, width):
            return array
        box = (0.0, 0.0, float(w), float(h))
    left, upper, right, lower = box
    if method == "nearest":
        rows = _nearest_indices(h, int(height), start=upper, stop=lower)
        cols = _nearest_indices(w, int(width), start=left, stop=right)
        return array[rows][:, cols]
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[-1] == 3):
        resized = Image.fromarray(array).resize(
            (int(width), int(height)), RESIZE_METHODS[method], box=box
        )
        return np.asarray(resized)
    return _resize_bands(array, height=int(height), width=int(width), method=method, box=box)


def _resize_bands(
    array: np.ndarray, *, height: int, width: int, method: str, box: tuple
) -> np.ndarray:
    """`resize` of any bands and dtype: each band by PIL in float32 ("F"), back to the
    dtype (integers rounded and clipped to their range)."""
    bands = array[..., None] if array.ndim == 2 else array
    out = np.empty((height, width, bands.shape[-1]), np.float32)
    for b in range(bands.shape[-1]):
        band = Image.fromarray(np.ascontiguousarray(bands[..., b], np.float32), mode="F")
        out[..., b] = np.asarray(band.resize((width, height), RESIZE_METHODS[method], box=box))
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(array.dtype)
    return out[..., 0] if array.ndim == 2 else out


def same_size_batches(
    items: Iterable[Any], *, batch_size: int, shape_of: Callable[[Any], tuple[int, ...]]
) -> Iterator[list[Any]]:
    """Groups consecutive items of equal shape into lists of at most ``batch_size``.

    Args:
      items: anything (examples, images).
      batch_size: maximum group size.
      shape_of: the shape that must agree within a group.

    Returns:
      An iterator of non-empty lists, in the input order.
    """
    group: list[Any] = []
    shape = None
    for item in items:
        item_shape = shape_of(item)
        if group and (item_shape != shape or len(group) == batch_size):
            yield group
            group = []
        group.append(item)
        shape = item_shape
    if group:
        yield group


def ordered_thread_map(
    fn: Callable[[Any], Any], items: Iterable[Any], *, depth: int = 8, workers: int = 4
) -> Iterator:
    """``map(fn, items)`` in order, computed by a few threads, at most ``depth`` results ahead.

    Decoding or encoding PNGs releases the GIL, so reading the next images overlaps the
    forward pass without holding a whole split in memory.

    Args:
      fn: the function to apply.
      items: its inputs (consumed lazily).
      depth: results computed ahead of the consumer.
      workers: threads.

    Returns:
      An iterator over ``fn(item)`` in the order of ``items``.
    """
    with ThreadPoolExecutor(max_workers=min(workers, max(depth, 1))) as pool:
        pending: collections.deque = collections.deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            for item in iterator:
                pending.append(pool.submit(fn, item))
                break
            yield result


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``resize(image, method="bilinear")``: the input pipeline's eval resize."""
    return resize(image, height=height, width=width, method="bilinear")


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``resize(array, method="nearest")``: labels and probabilities, any dtype."""
    return resize(array, height=height, width=width, method="nearest")


# Reading (decoding) the next images while the current batch is segmented.
prefetch_map = functools.partial(ordered_thread_map, depth=8)
