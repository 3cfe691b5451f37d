"""The reuse API in one import (``from unet_jax.inference import make_apply_fn``).

Kept stable for user code and the README's example; the implementation lives in modules
with one job each:

- ``unet_jax.run.loading``: load a run, read-only and params-only (``load``,
  ``load_run``, ``make_apply_fn``, ``LoadedRun``, the errors).
- ``unet_jax.deploy.segmenter``: segment images of any size (``Segmenter``, immutable options).
- ``unet_jax.data.image_ops``: padding/tiling geometry, ``resize``, ``ordered_thread_map``.
"""

from unet_jax.data.image_ops import (
    blend_window,
    ordered_thread_map,
    pad_widths,
    prefetch_map,
    resize,
    resize_image,
    resize_nearest,
    round_up,
    same_size_batches,
    tile_origins,
)
from unet_jax.deploy.segmenter import OptionError, Segmenter, SegmenterOptions
from unet_jax.run.loading import (
    CHECKPOINT_CHOICES,
    CheckpointSpecError,
    InferenceError,
    LoadedRun,
    WorkdirError,
    load,
    load_config,
    load_run,
    make_apply_fn,
    parse_checkpoint,
)

__all__ = [
    "CHECKPOINT_CHOICES",
    "CheckpointSpecError",
    "InferenceError",
    "LoadedRun",
    "OptionError",
    "Segmenter",
    "SegmenterOptions",
    "WorkdirError",
    "blend_window",
    "load",
    "load_config",
    "load_run",
    "make_apply_fn",
    "ordered_thread_map",
    "pad_widths",
    "parse_checkpoint",
    "prefetch_map",
    "resize",
    "resize_image",
    "resize_nearest",
    "round_up",
    "same_size_batches",
    "tile_origins",
]
