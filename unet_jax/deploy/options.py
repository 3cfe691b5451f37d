"""The inference options and their defaults, in one place.

Every option of eval.py, ``python -m unet_jax.predict`` and ``python -m unet_jax.export``
is a field of a frozen dataclass here (or of ``unet_jax.evaluation.options.EvalOptions``),
with its default and its help text. The commands' flags are generated from these fields
(``unet_jax.deploy.command_line``), so an option has one name and one default in every
command: ``--checkpoint``, ``--onnx``, ``--onnx_threads``, ``--tta_flip``, ``--progress``...

Light (no JAX import), so the command lines build their flags quickly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

from unet_jax.errors import InferenceError
from unet_jax.run.checkpoint_choice import DEFAULT_CHECKPOINT


class OptionError(InferenceError, ValueError):
    """An invalid inference setting (batch size, tile size, activation...)."""


# The scale at which the model sees an image: ``resize``d to the training size (the
# prediction resized back), or ``native``: at its own size, segmented whole (padded) or in
# blended tiles when large. Tiling is how native scale is computed, not a scale.
SCALES = ("resize", "native")
SCALE_HELP = (
    "The scale the model sees images at: resize (to the training size, the prediction "
    "resized back) or native (own size: padded, or tiled when larger than --max_side). "
    "Default: the scale the model was trained at (native for runs trained on crops)."
)


def trained_scale(config: Any) -> str:
    """The scale a run's model was trained at: "native" for ``input_mode="crop"`` runs.

    Args:
      config: the run's config (a ConfigDict or an ONNX sidecar's dict: both have .get).

    Returns:
      "resize" or "native".
    """
    return "native" if config.get("input_mode", "resize") == "crop" else "resize"


def check_scale(scale: str | None) -> None:
    """Raises OptionError unless ``scale`` is None or one of SCALES."""
    if scale is not None and scale not in SCALES:
        raise OptionError(f"scale must be one of {SCALES}, got {scale!r}")


# What a run may store as its inference recipe (``config.inference``): the defaults of
# predict, eval.py and the exports' sidecars for that run; flags and arguments override.
# ``band``: rows (fractions of the height) that predict segments again at native scale over
# a resize-scale prediction (``unet_jax.deploy.banded``).
RECIPE_FIELDS = ("scale", "tta_flip", "tta_scales", "adapt_bn", "adapt_momentum", "band")


def check_band(band: Any) -> tuple[float, float]:
    """``(top, bottom)`` fractions of the height with ``0 <= top < bottom <= 1``.

    Raises:
      OptionError: anything else, naming the value.
    """
    try:
        top, bottom = (float(v) for v in band)
    except (TypeError, ValueError):
        raise OptionError(
            f"band must be (top, bottom) fractions of the height, got {band!r}"
        ) from None
    if not 0.0 <= top < bottom <= 1.0:
        raise OptionError(f"band must satisfy 0 <= top < bottom <= 1, got {band!r}")
    return top, bottom


def recipe_of(config: Any) -> dict[str, Any]:
    """A run's stored inference recipe: the set fields of ``config.inference``.

    Args:
      config: the run's config (a ConfigDict, or an ONNX sidecar's dict), or None.

    Returns:
      {field: value} for the fields of :data:`RECIPE_FIELDS` that are set (not None).

    Raises:
      OptionError: a field of ``config.inference`` that is not a recipe field.
    """
    stored = config.get("inference") if config is not None else None
    if not stored:
        return {}
    stored = stored.to_dict() if hasattr(stored, "to_dict") else dict(stored)
    unknown = sorted(set(stored) - set(RECIPE_FIELDS))
    if unknown:
        raise OptionError(
            f"config.inference.{unknown[0]} is not an inference option; the recipe holds "
            f"{', '.join(RECIPE_FIELDS)}"
        )
    recipe = {k: v for k, v in stored.items() if v is not None}
    if "tta_scales" in recipe:
        scales = recipe["tta_scales"]
        try:
            recipe["tta_scales"] = tuple(float(v) for v in scales)
        except (TypeError, ValueError):
            raise OptionError(
                f"config.inference.tta_scales must be a list of numbers, got {scales!r}"
            ) from None
    if not isinstance(recipe.get("tta_flip", False), bool):
        raise OptionError(
            f"config.inference.tta_flip must be True or False, got {recipe['tta_flip']!r}"
        )
    if isinstance(recipe.get("adapt_momentum", 0.0), bool) or not isinstance(
        recipe.get("adapt_momentum", 0.0), int | float
    ):
        raise OptionError(
            f"config.inference.adapt_momentum must be a number, got {recipe['adapt_momentum']!r}"
        )
    if "scale" in recipe and recipe["scale"] not in SCALES:
        raise OptionError(
            f"config.inference.scale must be one of {SCALES}, got {recipe['scale']!r}"
        )
    if "band" in recipe:
        try:
            recipe["band"] = check_band(recipe["band"])
        except OptionError as e:
            raise OptionError(f"config.inference.{e}") from None
    return recipe


def check_recipe(config: Any) -> None:
    """Checks a run's stored inference recipe as predict, eval.py and export will use it.

    Train start-up calls it, so that a run is never trained with a recipe its own
    commands then refuse.

    Args:
      config: the run's config.

    Raises:
      OptionError: a bad field of ``config.inference`` (named).
    """
    SegmenterOptions().for_config(config)


def scale_for(scale: str | None, config: Any) -> str:
    """The scale to segment at: ``scale``, else the run's recipe's, else its trained scale."""
    check_scale(scale)
    return scale or recipe_of(config).get("scale") or trained_scale(config)


BAND_OFF = "off"
BAND_FORM = "TOP,BOTTOM as fractions of the height (e.g. 0.47,0.77), or off"
BAND_DEFAULT = "Default: the run's inference recipe (config.inference), else off."
BAND_HELP = (
    "Rows segmented again at native scale over a resize-scale prediction, whose labels "
    f"replace those rows: {BAND_FORM}. {BAND_DEFAULT}"
)


def band_for(band: str | None, config: Any, *, scale: str) -> tuple[float, float] | None:
    """The band to segment again at native scale (``unet_jax.deploy.banded``), or None.

    Args:
      band: the ``--band`` flag: "TOP,BOTTOM", "off", or None (the run's recipe).
      config: the run's config (or an ONNX sidecar's dict).
      scale: the resolved scale; at "native" the whole image already is native.

    Returns:
      ``(top, bottom)`` fractions of the height, or None.

    Raises:
      OptionError: a band that is not two fractions, or one given at native scale.
    """
    if band == BAND_OFF:
        return None
    if band is None:
        return None if scale == "native" else recipe_of(config).get("band")
    if scale == "native":
        raise OptionError(
            f"band={band} applies at scale resize: at native scale every row already is "
            "segmented at native scale"
        )
    try:
        return check_band(band.split(","))
    except OptionError:
        raise OptionError(
            "band must be TOP,BOTTOM fractions of the height with 0 <= top < bottom <= 1, "
            f"or off; got {band!r}"
        ) from None


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its flag's help text (and allowed values)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


# ----------------------------------------------------------------------------
# The options.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckpointChoice:
    """Which checkpoint of a run.

    Attributes:
      checkpoint: "best" (best validation metric), "latest" or a step number.
    """

    checkpoint: str | int = option(DEFAULT_CHECKPOINT, "'best', 'latest' or a step number.")


@dataclasses.dataclass(frozen=True)
class ModelSource(CheckpointChoice):
    """The model to segment with: a run's checkpoint, or an exported ONNX file.

    Attributes:
      onnx: an exported ``.onnx`` file (with its ``.json`` sidecar) to run with ONNX
        Runtime instead of the checkpoint.
      onnx_threads: ONNX Runtime intra-op threads.
    """

    onnx: str | None = option(
        None, "Segment with this exported ONNX model (ONNX Runtime) instead of the checkpoint."
    )
    onnx_threads: int = option(2, "ONNX Runtime intra-op threads (with --onnx).")


ADAPT_MODES = ("off", "set", "stream")
# The largest multi-scale TTA factor: a factor k multiplies a forward pass's memory by k*k,
# so 4 (16x) is the most that fits where the model fits at 1 with room to spare.
MAX_TTA_SCALE = 4.0
_RUN_DEFAULT = "Default: the run's inference recipe (config.inference), else"


@dataclasses.dataclass(frozen=True)
class SegmenterOptions:
    """How images are segmented (API, eval.py, predict).

    The fields of :data:`RECIPE_FIELDS` default to None: the run's inference recipe
    (``config.inference``), else :attr:`FALLBACKS` (:meth:`for_config`, :meth:`resolved`).

    Attributes:
      tta_flip: average each image's probabilities with its mirror image's.
      tta_scales: multi-scale test-time augmentation: the image is also segmented resized
        by each factor and the probabilities (resized back) averaged; (1.0,): none.
      adapt_bn: test-time BatchNorm adaptation (``unet_jax.deploy.bn_adapt``): "off",
        "set" (statistics of the whole set of images segmented) or "stream" (a running
        average over the batches as they come).
      adapt_momentum: "stream": the running average's weight of the old statistics.
      batch_size: images (or tiles) per forward pass, rounded up to a multiple of the
        device count; None: the run's ``eval_batch_size`` (see :meth:`for_config`).
      max_side: largest padded side segmented whole; larger images are tiled.
      tile_size: tile side (a multiple of the model's size multiple).
      tile_overlap: overlap between neighbouring tiles, also the blending ramp length.
    """

    FALLBACK_BATCH_SIZE: ClassVar[int] = 8  # a config without eval_batch_size, no config
    # Without a recipe: no TTA, the checkpoint's BatchNorm statistics.
    FALLBACKS: ClassVar[dict[str, Any]] = {
        "tta_flip": False,
        "tta_scales": (1.0,),
        "adapt_bn": "off",
        "adapt_momentum": 0.9,
    }

    tta_flip: bool | None = option(
        None, f"Average the predictions of each image and its mirror image. {_RUN_DEFAULT} off."
    )
    tta_scales: tuple[float, ...] | None = option(
        None,
        "Multi-scale TTA: comma-separated resize factors (e.g. 0.75,1,1.25); the "
        f"probabilities at each (resized back) are averaged. {_RUN_DEFAULT} 1 (none).",
    )
    adapt_bn: str | None = option(
        None,
        "Test-time BatchNorm adaptation (AdaBN): re-estimate the BatchNorm statistics on the "
        "images segmented: set (the whole set of images) or stream (a running average over "
        f"the batches); the checkpoint is not changed. {_RUN_DEFAULT} off.",
        choices=ADAPT_MODES,
    )
    adapt_momentum: float | None = option(
        None,
        "With --adapt_bn=stream: the running average's weight of the old statistics. "
        f"{_RUN_DEFAULT} 0.9.",
    )
    batch_size: int | None = option(
        None, "Images (or tiles) per forward pass (default: the run's eval_batch_size)."
    )
    max_side: int = option(1024, "Largest padded side segmented whole; larger images are tiled.")
    tile_size: int = option(512, "Tile side for images larger than --max_side.")
    tile_overlap: int = option(128, "Overlap (blending ramp) between tiles.")

    def __post_init__(self) -> None:
        scales = self.tta_scales
        if scales is not None and (
            not scales or not 0 < min(scales) <= max(scales) <= MAX_TTA_SCALE
        ):
            given = ",".join(f"{v:g}" for v in scales)
            raise OptionError(
                f"tta_scales must be factors in (0, {MAX_TTA_SCALE:g}], got {given} "
                "(a factor k multiplies a forward pass's memory by k*k)"
            )
        if self.adapt_bn is not None and self.adapt_bn not in ADAPT_MODES:
            raise OptionError(f"adapt_bn must be one of {ADAPT_MODES}, got {self.adapt_bn!r}")
        if self.adapt_momentum is not None and not 0 <= self.adapt_momentum < 1:
            raise OptionError(f"adapt_momentum must be in [0, 1), got {self.adapt_momentum}")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.tile_overlap < self.tile_size:
            raise OptionError(
                f"tile_overlap must be in [0, tile_size={self.tile_size}), got {self.tile_overlap}"
            )

    def for_config(self, config: Any) -> SegmenterOptions:
        """These options with their None fields from a run's config, then the fallbacks.

        Args:
          config: the run's config (or an ONNX sidecar's dict): ``eval_batch_size`` and
            the inference recipe ``config.inference``.

        Returns:
          The options, every field set.

        Raises:
          OptionError: a bad value in ``config.inference`` (named).
        """
        recipe = recipe_of(config)
        changes = {k: recipe[k] for k in self.FALLBACKS if getattr(self, k) is None and k in recipe}
        if self.batch_size is None:
            changes["batch_size"] = int(config.get("eval_batch_size", self.FALLBACK_BATCH_SIZE))
        try:
            resolved = dataclasses.replace(self, **changes).resolved()
        except OptionError as e:
            raise OptionError(f"config.inference: {e}") from e
        if resolved.adapt_bn != "stream" and self.adapt_momentum is not None:
            raise OptionError(
                f"adapt_momentum={self.adapt_momentum:g} applies with adapt_bn=stream only "
                f"(adapt_bn is {resolved.adapt_bn!r})"
            )
        return resolved

    def resolved(self) -> SegmenterOptions:
        """These options with their None recipe fields set to :attr:`FALLBACKS`."""
        changes = {k: v for k, v in self.FALLBACKS.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def tta(self) -> bool:
        """Whether any test-time augmentation is on (flip, or scales other than 1)."""
        return bool(self.tta_flip) or tuple(self.tta_scales or (1.0,)) != (1.0,)

    def check_model(self, size_multiple: int) -> None:
        """Raises OptionError when the sizes do not fit a model of this size multiple."""
        m = size_multiple
        if m < 1:
            raise OptionError(f"size_multiple must be >= 1, got {m}")
        if self.tile_size < m or self.tile_size % m:
            raise OptionError(f"tile_size must be a positive multiple of {m}, got {self.tile_size}")
        if self.max_side < m:
            raise OptionError(f"max_side must be >= {m}, got {self.max_side}")


@dataclasses.dataclass(frozen=True)
class PredictOptions(ModelSource):
    """What ``python -m unet_jax.predict`` does besides choosing the model.

    Attributes:
      scale: "resize" or "native" (:data:`SCALES`); None: the scale the model was trained
        at (:func:`trained_scale`).
      band: rows segmented again at native scale (:func:`band_for`); None: the recipe's.
      probabilities: also write float16 per-class probabilities (.npy).
      progress: show a progress bar.
      segment: TTA, batch size and tiling.
    """

    scale: str | None = option(None, SCALE_HELP, choices=SCALES)
    band: str | None = option(None, BAND_HELP)
    probabilities: bool = option(False, "Also write float16 probabilities (.npy).")
    progress: bool = option(True, "Show a progress bar.")
    segment: SegmenterOptions = SegmenterOptions()


EXPORT_FORMATS = ("jaxexport", "onnx")


@dataclasses.dataclass(frozen=True)
class ExportOptions(CheckpointChoice):
    """What ``python -m unet_jax.export`` writes.

    Attributes:
      format: "jaxexport" (jax.export) or "onnx".
      platforms: jax.export lowering platforms.
      int8: ONNX only: statically quantise to int8, calibrated on training images.
      calibration: training images to calibrate int8 on.
      data_dir: TFDS data directory of the calibration images (None: the run's).
    """

    format: str = option(
        "jaxexport",
        "jaxexport (jax.export) or onnx (needs pip install -e '.[onnx]').",
        choices=EXPORT_FORMATS,
    )
    platforms: tuple[str, ...] = option(
        ("cpu", "cuda"), "Comma-separated lowering platforms (jaxexport only)."
    )
    int8: bool = option(
        False, "ONNX only: statically quantise to int8, calibrated on training images."
    )
    calibration: int = option(32, "With --int8: training images to calibrate on.")
    data_dir: str | None = option(None, "With --int8: TFDS data directory (default: the run's).")


# ----------------------------------------------------------------------------
# Building options from flat names.
# ----------------------------------------------------------------------------


def _is_nested(field: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(field.default)


def flat_fields(cls: type) -> Iterator[dataclasses.Field]:
    """Every option field of ``cls``, nested option dataclasses flattened into theirs."""
    for field in dataclasses.fields(cls):
        if _is_nested(field):
            yield from flat_fields(type(field.default))
        else:
            yield field


def override(options: Any, **flat: Any) -> Any:
    """``options`` with fields replaced by flat name (nested options' fields included).

    Args:
      options: an options dataclass instance.
      **flat: field values by name; a nested option dataclass may be given whole too.

    Returns:
      A new instance.

    Raises:
      TypeError: a name that is no option of ``options``.
    """
    unknown = (
        set(flat)
        - {f.name for f in dataclasses.fields(options)}
        - {f.name for f in flat_fields(type(options))}
    )
    if unknown:
        raise TypeError(f"{type(options).__name__} has no option {sorted(unknown)}")
    changes = {}
    for field in dataclasses.fields(options):
        if _is_nested(field):
            nested = flat.get(field.name, getattr(options, field.name))
            names = {f.name for f in flat_fields(type(field.default))}
            inner = {k: v for k, v in flat.items() if k in names}
            changes[field.name] = override(nested, **inner) if inner else nested
        elif field.name in flat:
            changes[field.name] = flat[field.name]
    return dataclasses.replace(options, **changes)


def build(cls: type, **flat: Any) -> Any:
    """``cls()`` with options given by flat name (see :func:`override`)."""
    return override(cls(), **flat)
