"""How a trained model segments images: the options and their defaults, in one place.

Light (no JAX import), so the command lines can build their flags from it quickly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from unet_jax.errors import InferenceError


class OptionError(InferenceError, ValueError):
    """An invalid inference setting (batch size, tile size, activation...)."""


@dataclasses.dataclass(frozen=True)
class SegmenterOptions:
    """How images are segmented: the one place of these defaults (API, eval.py, predict).

    Attributes:
      tta_flip: average each image's probabilities with its mirror image's.
      batch_size: images (or tiles) per forward pass, rounded up to a multiple of the
        device count; None: the run's ``eval_batch_size`` (see :meth:`for_config`).
      max_side: largest padded side segmented whole; larger images are tiled.
      tile_size: tile side (a multiple of the model's size multiple).
      tile_overlap: overlap between neighbouring tiles, also the blending ramp length.
    """

    FALLBACK_BATCH_SIZE: ClassVar[int] = 8  # a config without eval_batch_size, no config

    tta_flip: bool = False
    batch_size: int | None = None
    max_side: int = 1024
    tile_size: int = 512
    tile_overlap: int = 128

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.tile_overlap < self.tile_size:
            raise OptionError(
                f"tile_overlap must be in [0, tile_size={self.tile_size}), got {self.tile_overlap}"
            )

    def for_config(self, config: Any) -> SegmenterOptions:
        """These options with ``batch_size`` filled in from a run config's eval_batch_size."""
        if self.batch_size is not None:
            return self
        batch_size = int(config.get("eval_batch_size", self.FALLBACK_BATCH_SIZE))
        return dataclasses.replace(self, batch_size=batch_size)

    def check_model(self, size_multiple: int) -> None:
        """Raises OptionError when the sizes do not fit a model of this size multiple."""
        m = size_multiple
        if m < 1:
            raise OptionError(f"size_multiple must be >= 1, got {m}")
        if self.tile_size < m or self.tile_size % m:
            raise OptionError(f"tile_size must be a positive multiple of {m}, got {self.tile_size}")
        if self.max_side < m:
            raise OptionError(f"max_side must be >= {m}, got {self.max_side}")


_HELP = {
    "tta_flip": "Average the predictions of each image and its mirror image.",
    "batch_size": "Images (or tiles) per forward pass (default: the run's eval_batch_size).",
    "max_side": "Largest padded side segmented whole; larger images are tiled.",
    "tile_size": "Tile side for images larger than --max_side.",
    "tile_overlap": "Overlap (blending ramp) between tiles.",
}


def add_arguments(parser: Any) -> None:
    """Adds the SegmenterOptions flags to an ``argparse.ArgumentParser`` (predict)."""
    for field in dataclasses.fields(SegmenterOptions):
        if field.type in (bool, "bool"):
            parser.add_argument(f"--{field.name}", action="store_true", help=_HELP[field.name])
        else:
            parser.add_argument(
                f"--{field.name}", type=int, default=field.default, help=_HELP[field.name]
            )


def define_absl_flags(flag_values: Any = None) -> None:
    """Defines the SegmenterOptions flags as absl flags (eval.py).

    Args:
      flag_values: an ``absl.flags.FlagValues``; None: ``absl.flags.FLAGS``.
    """
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    for field in dataclasses.fields(SegmenterOptions):
        define = flags.DEFINE_bool if field.type in (bool, "bool") else flags.DEFINE_integer
        define(field.name, field.default, _HELP[field.name], flag_values=flag_values)


def options_from_flags(values: Any) -> SegmenterOptions:
    """The SegmenterOptions that parsed flags (argparse namespace or absl FLAGS) ask for."""
    names = [field.name for field in dataclasses.fields(SegmenterOptions)]
    return SegmenterOptions(**{name: getattr(values, name) for name in names})
