"""The class set of a data set and of every run trained on it.

A data set declares its classes (names, colours); the trainer writes them to
``<workdir>/classes.json`` and into every checkpoint, and everything downstream (loss,
metrics, reports, predict, export) reads them from there: nothing else holds a class list.
Label maps store the class id per pixel; ``IGNORE_LABEL`` marks pixels that count in no
loss and no metric (whatever a data set's own ignore value is, it is mapped to 255 when
the data is prepared). A *void* class is one of the data's classes that a run treats as
ignored (``void_classes``): its pixels become 255 when read, it leaves the class list (so
no head output, never predicted) and its name stays in ``ClassSet.void`` for reports.
"""

from __future__ import annotations

import colorsys
import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unet_jax.errors import UserError

IGNORE_LABEL: int = 255
MAX_CLASSES: int = 255  # ids 0..254; 255 is the ignore value
# Ignored pixels are drawn white.
IGNORE_COLOR: tuple[int, int, int] = (255, 255, 255)

# How label maps are written as images (predict): the data set's own mask format.
LABEL_FORMATS = ("id", "red", "color", "binary")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
# Distinct colours for data sets that declare none (matplotlib's tab10, then generated).
_DEFAULT_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


class ClassSetError(UserError, ValueError):
    """An invalid class declaration; the message names the field and the value."""


def parse_hex(value: Any, *, where: str) -> tuple[int, int, int]:
    """``"#3C1098"`` -> ``(60, 16, 152)``.

    Args:
      value: the colour as written in a classes file.
      where: what to name in the error, e.g. ``"classes[2].color"``.

    Returns:
      The RGB triple.

    Raises:
      ClassSetError: not a ``#RRGGBB`` string.
    """
    if not isinstance(value, str) or not _HEX.match(value):
        raise ClassSetError(f"{where}: {value!r} is not a colour of the form '#RRGGBB'")
    return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def to_hex(color: Sequence[int]) -> str:
    """``(60, 16, 152)`` -> ``"#3C1098"``."""
    return "#" + "".join(f"{int(c):02X}" for c in color)


def default_colors(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` distinct display colours (tab10, then evenly spaced hues)."""
    colors = list(_DEFAULT_COLORS[:n])
    extra = n - len(colors)
    for i in range(extra):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colors)


@dataclasses.dataclass(frozen=True)
class ClassSet:
    """The classes of a data set: names and display colours, in class-id order.

    Attributes:
      names: class names; class ``i`` is ``names[i]``.
      colors: one RGB colour per class (pictures; colour masks are decoded by them when
        the data set says so).
      label_format: how the data set's masks store classes, and so how predicted label
        maps are written: "id" (greyscale ids), "red" (id in the red channel),
        "color" (the class colours), "binary" (0 background, 255 foreground).
      void: names of the data's classes that are void here (not among ``names``): their
        pixels carry the ignore label (``apply_void``).
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    label_format: str = "id"
    void: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names, colors = tuple(self.names), tuple(tuple(int(v) for v in c) for c in self.colors)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "void", tuple(self.void))
        for i, name in enumerate(self.void):
            if not isinstance(name, str) or name in names or self.void.index(name) != i:
                raise ClassSetError(
                    f"void[{i}]: {name!r} must be a distinct name that is not a class"
                )
        if not names:
            raise ClassSetError("classes: at least one class is needed")
        if len(names) > MAX_CLASSES:
            raise ClassSetError(f"classes: {len(names)} classes, at most {MAX_CLASSES}")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                raise ClassSetError(f"classes[{i}].name: {name!r} is not a non-empty string")
            if names.index(name) != i:
                raise ClassSetError(f"classes[{i}].name: {name!r} is a duplicate")
        if self.label_format not in LABEL_FORMATS:
            raise ClassSetError(
                f"label_format: {self.label_format!r} is not one of {LABEL_FORMATS}"
            )
        if self.label_format == "binary" and len(names) != 2:
            raise ClassSetError(f"label_format 'binary' needs 2 classes, not {len(names)}")
        if len(colors) != len(names):
            raise ClassSetError(f"classes: {len(names)} names but {len(colors)} colours")
        for i, color in enumerate(colors):
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ClassSetError(f"classes[{i}].color: {color!r} is not an RGB triple")

    @classmethod
    def from_names(
        cls,
        names: Sequence[str],
        colors: Sequence[Sequence[int]] | None = None,
        *,
        label_format: str = "id",
    ) -> ClassSet:
        """A class set with the given names; colours default to `default_colors`."""
        colors = tuple(colors) if colors is not None else default_colors(len(names))
        return cls(tuple(names), colors, label_format)

    @classmethod
    def numbered(cls, num_classes: int) -> ClassSet:
        """``class0`` .. ``class<C-1>``: for data that declares no names."""
        return cls.from_names([f"class{i}" for i in range(num_classes)])

    @property
    def ignored_label(self) -> str:
        """What ignored pixels are called in legends: "ignored", naming void classes."""
        return f"ignored (void: {', '.join(self.void)})" if self.void else "ignored"

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def palette(self) -> np.ndarray:
        """uint8 [C, 3]."""
        return np.array(self.colors, np.uint8).reshape(-1, 3)

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """Maps class ids [..., H, W] to RGB [..., H, W, 3]; other ids to `IGNORE_COLOR`."""
        lut = np.tile(np.array(IGNORE_COLOR, np.uint8), (256, 1))
        lut[: self.num_classes] = self.palette
        return lut[np.clip(np.asarray(label), 0, 255).astype(np.uint8)]

    def label_image(self, label: np.ndarray) -> np.ndarray:
        """A label map [H, W] as an image in the data set's mask format (`label_format`)."""
        label = np.asarray(label, np.uint8)
        if self.label_format == "color":
            return self.colorize(label)
        if self.label_format == "red":
            return np.stack([label, np.zeros_like(label), np.zeros_like(label)], axis=-1)
        if self.label_format == "binary":
            return np.where(label == 1, 255, 0).astype(np.uint8)
        return label

    def to_json(self) -> dict[str, Any]:
        """The run's ``classes.json`` content."""
        return {
            "classes": [
                {"name": n, "color": to_hex(c)}
                for n, c in zip(self.names, self.colors, strict=True)
            ],
            "ignore_label": IGNORE_LABEL,
            "label_format": self.label_format,
            "void": list(self.void),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "classes") -> ClassSet:
        """Reads `to_json`'s format (colours optional).

        Args:
          data: ``{"classes": [{"name": ..., "color": "#RRGGBB"}, ...]}``.
          where: what to name in errors (a file name).

        Returns:
          The class set.

        Raises:
          ClassSetError: the content is not of that form.
        """
        entries = data.get("classes") if isinstance(data, Mapping) else None
        if not isinstance(entries, list) or not entries:
            raise ClassSetError(f"{where}: needs a non-empty list under 'classes'")
        names, colors = [], []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ClassSetError(f"{where}: classes[{i}] must be an object with a 'name'")
            names.append(entry["name"])
            if entry.get("color") is not None:
                colors.append(parse_hex(entry["color"], where=f"{where}: classes[{i}].color"))
        if colors and len(colors) != len(names):
            raise ClassSetError(f"{where}: give a colour for every class or for none")
        try:
            declared = cls.from_names(
                names, colors or None, label_format=data.get("label_format", "id")
            )
            return dataclasses.replace(declared, void=tuple(data.get("void") or ()))
        except ClassSetError as e:
            raise ClassSetError(f"{where}: {e}") from None


def apply_void(classes: ClassSet, void: Sequence[str]) -> tuple[ClassSet, np.ndarray]:
    """Makes some of a class set's classes void: ignored, out of the class list.

    Args:
      classes: the data's class set.
      void: names of its classes to make void (an empty sequence changes nothing).

    Returns:
      ``(class set of the other classes, in order, with ``void`` extended by these names;
      lookup table uint8 [256] from the data's label values to the new ones)``: void ids
      go to ``IGNORE_LABEL``, the others to their rank among the kept classes, values at
      or above the class count stay as they are.

    Raises:
      ClassSetError: a name that is no class, or no class left.
    """
    lut = np.arange(256, dtype=np.uint8)
    if not void:
        return classes, lut
    unknown = [n for n in void if n not in classes.names]
    if unknown:
        raise ClassSetError(
            f"void_classes: {unknown[0]!r} is not a class of the data ({', '.join(classes.names)})"
        )
    kept = [i for i, n in enumerate(classes.names) if n not in void]
    if not kept:
        raise ClassSetError("void_classes: every class is void; at least one must stay")
    lut[: classes.num_classes] = IGNORE_LABEL
    lut[kept] = np.arange(len(kept), dtype=np.uint8)
    reduced = ClassSet(
        tuple(classes.names[i] for i in kept),
        tuple(classes.colors[i] for i in kept),
        classes.label_format,
        void=classes.void + tuple(n for n in classes.names if n in void),
    )
    return reduced, lut
