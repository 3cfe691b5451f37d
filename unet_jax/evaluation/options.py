"""What eval.py evaluates and how: the options and their defaults, in one place.

eval.py's flags are generated from :class:`EvalOptions` (``unet_jax.deploy.options``), so
a default lives here only. Light (no JAX import), so ``eval.py --help`` stays fast.
"""

from __future__ import annotations

import dataclasses

from unet_jax.data.splits import SPLITS
from unet_jax.deploy.options import (
    BAND_DEFAULT,
    BAND_FORM,
    SCALES,
    ModelSource,
    OptionError,
    SegmenterOptions,
    option,
)


@dataclasses.dataclass(frozen=True)
class EvalOptions(ModelSource):
    """What to evaluate and how (the checkpoint or ONNX model: :class:`ModelSource`).

    Attributes:
      split: one of ``unet_jax.data.splits.SPLITS``.
      full_resolution: also evaluate at the examples' stored resolution.
      scale: the scale the model sees a full-size example at: "native" (its stored size,
        padded or tiled) or "resize" (resized to the training size, the prediction resized
        back with nearest neighbour); the labels stay full size. None: the scale the model
        was trained at (``unet_jax.deploy.options.trained_scale``).
      band: the full-resolution pass at resize scale: rows segmented again at native scale,
        as predict does (``unet_jax.deploy.options.band_for``); None: the run's recipe.
      segment: TTA, batch size (None: ``config.eval_batch_size``) and tiling.
      num_gallery: examples shown in the gallery.
      data_dir: TFDS data directory; None: the run's ``config.data_dir``.
      pictures: write the PNG pictures.
      progress: show a progress bar.
    """

    split: str = option("test", "Split to evaluate.", choices=SPLITS)
    full_resolution: bool = option(
        False, "Also evaluate at the examples' original (full-size) resolution."
    )
    scale: str | None = option(
        None,
        "With --full_resolution: the scale the model sees the full-size examples at: resize "
        "(to the training size, the prediction resized back) or native (stored size: padded, "
        "or tiled when larger than --max_side). Default: the scale the model was trained at.",
        choices=SCALES,
    )
    band: str | None = option(
        None,
        "With --full_resolution at scale resize: the rows segmented again at native scale, "
        f"as predict's --band: {BAND_FORM}. {BAND_DEFAULT}",
    )
    segment: SegmenterOptions = SegmenterOptions()
    num_gallery: int = option(4, "Examples shown in the gallery picture.")
    data_dir: str | None = option(None, "TFDS data directory (default: the run's data_dir).")
    pictures: bool = option(True, "Draw the PNG pictures.")
    progress: bool = option(True, "Show a progress bar.")

    def __post_init__(self) -> None:
        # The training-resolution pass always sees the examples as validation did.
        for name in ("scale", "band"):
            if getattr(self, name) is not None and not self.full_resolution:
                raise OptionError(
                    f"{name}={getattr(self, name)!r} applies to the full-resolution pass "
                    "only: add full_resolution (--full_resolution)"
                )
