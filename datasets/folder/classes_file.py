"""``classes.json`` of a folder data set: what the mask values mean.

Two forms (docs/YOUR_DATA.md):

- colours: ``{"classes": [{"name": "Building", "color": "#3C1098"}, ...],
  "ignore": ["#000000"]}``: masks are RGB (or palette) images decoded by exact colour;
  ``ignore`` lists colours that become the ignore value;
- ids: ``{"classes": [{"name": "background"}, {"name": "road"}], "ignore": [255]}``:
  mask pixel values are class ids (single-channel or palette-index PNGs); ``ignore``
  lists values that become the ignore value.

A class may carry ``"void": true``: it is decoded like any class, and every run on the data
makes it void (``unet_jax.data.classes.apply_void``): its pixels ignored in the loss and
every metric, the class out of the model's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from datasets.common.errors import DataError
from unet_jax.data.classes import ClassSet, ClassSetError, apply_void, parse_hex

MASK_MODES = ("color", "id", "binary")


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """How mask pixels become class ids.

    Attributes:
      classes: names and display colours.
      mode: ``"color"`` (exact RGB colour -> id), ``"id"`` (value = id) or ``"binary"``
        (values {0, 255} or {0, 1}: 0 background, anything else foreground).
      ignore_colors: ``"color"`` mode: RGB colours mapped to the ignore value.
      ignore_ids: ``"id"`` mode: values mapped to the ignore value.
      source: where the rule comes from (the classes.json path, or how it was inferred).
      void: names of classes that runs on the data make void.
    """

    classes: ClassSet
    mode: str
    ignore_colors: tuple[tuple[int, int, int], ...] = ()
    ignore_ids: tuple[int, ...] = ()
    source: str = ""
    void: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the user: what was decided."""
        names = ", ".join(self.classes.names)
        if self.mode == "color":
            ignore = ", ".join(f"#{r:02X}{g:02X}{b:02X}" for r, g, b in self.ignore_colors)
            how = "RGB masks decoded by colour" + (f"; ignored colours: {ignore}" if ignore else "")
        elif self.mode == "id":
            ignore = ", ".join(str(v) for v in self.ignore_ids)
            how = "mask values are class ids" + (f"; ignored values: {ignore}" if ignore else "")
        else:
            how = "binary masks: 0 is background, 255 (or 1) foreground"
        if self.void:
            how += f"; void (ignored, never predicted): {', '.join(self.void)}"
        return f"{self.classes.num_classes} classes ({names}); {how} [{self.source}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "ignore_colors": [list(c) for c in self.ignore_colors],
            "ignore_ids": list(self.ignore_ids),
            "source": self.source,
            "void": list(self.void),
            "description": self.describe(),
        }


def read_classes_file(path: pathlib.Path) -> MaskRule:
    """Parses and checks a ``classes.json``.

    Args:
      path: the file.

    Returns:
      The mask rule it declares (``"color"`` when every class has a colour, else ``"id"``).

    Raises:
      DataError: unreadable JSON, wrong shape, duplicate names or colours, bad hex, an
        ignore entry of the wrong kind; the message names the file and the entry.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: must hold a JSON object with 'classes' (and 'ignore')")
    unknown = sorted(set(data) - {"classes", "ignore"})
    if unknown:
        raise DataError(f"{path}: unknown field(s) {unknown}; allowed: 'classes', 'ignore'")
    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: 'classes' must be a non-empty list of {{\"name\": ...}}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise DataError(f"{path}: classes[{i}] must be an object with a string 'name'")
        extra = sorted(set(entry) - {"name", "color", "void"})
        if extra:
            raise DataError(f"{path}: classes[{i}] has unknown field(s) {extra}")
        if not isinstance(entry.get("void", False), bool):
            raise DataError(f"{path}: classes[{i}].void must be true or false")
    try:
        classes = ClassSet.from_json(
            {"classes": [{k: e[k] for k in ("name", "color") if k in e} for e in entries]},
            where=str(path),
        )
    except ClassSetError as e:
        raise DataError(str(e)) from None
    void = tuple(e["name"] for e in entries if e.get("void"))
    try:
        apply_void(classes, void)  # at least one class must stay
    except ClassSetError as e:
        raise DataError(f"{path}: {e}") from None
    with_color = [e for e in entries if e.get("color") is not None]
    mode = "color" if with_color else "id"
    if mode == "color" and len(set(classes.colors)) != len(classes.colors):
        dup = next(c for c in classes.colors if classes.colors.count(c) > 1)
        raise DataError(f"{path}: colour #{dup[0]:02X}{dup[1]:02X}{dup[2]:02X} used twice")
    ignore = data.get("ignore", [])
    if not isinstance(ignore, list):
        raise DataError(f"{path}: 'ignore' must be a list")
    if mode == "color":
        ignore_colors = tuple(
            parse_hex(v, where=f"{path}: ignore[{i}]") for i, v in enumerate(ignore)
        )
        clash = set(ignore_colors) & set(classes.colors)
        if clash:
            r, g, b = sorted(clash)[0]
            raise DataError(f"{path}: #{r:02X}{g:02X}{b:02X} is both a class colour and ignored")
        classes = dataclasses.replace(classes, label_format="color")
        return MaskRule(classes, "color", ignore_colors=ignore_colors, source=str(path), void=void)
    for i, v in enumerate(ignore):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise DataError(
                f"{path}: ignore[{i}] = {v!r}; without class colours, ignore lists mask values "
                "0..255"
            )
        if v < classes.num_classes:
            raise DataError(f"{path}: ignore[{i}] = {v} is the id of class {classes.names[v]!r}")
    return MaskRule(classes, "id", ignore_ids=tuple(ignore), source=str(path), void=void)
