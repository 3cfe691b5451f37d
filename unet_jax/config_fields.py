"""Dotted config fields (``"model.features"``) on a ConfigDict or its JSON: get, set,
flatten; and JSON lists back to the tuples the config files hold. Imports nothing of this
project (the config files use it too)."""

from __future__ import annotations

from typing import Any

_RAISE = object()


def get_field(tree: Any, field: str, default: Any = _RAISE) -> Any:
    """The value of the dotted ``field`` in a ConfigDict or nested dict.

    Args:
      tree: the config (or its JSON).
      field: e.g. ``"model.encoder"``.
      default: returned when a part is missing (or its parent is no mapping); without it,
        a missing part raises.

    Raises:
      KeyError: a part is missing and no default is given.
    """
    node = tree
    for part in field.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, IndexError):
            if default is _RAISE:
                raise
            return default
    return node


def set_field(tree: Any, field: str, value: Any) -> None:
    """Sets the dotted ``field`` of ``tree`` (its parents must exist)."""
    *parents, name = field.split(".")
    node = get_field(tree, ".".join(parents)) if parents else tree
    node[name] = value


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted field: value}`` of every leaf of a ConfigDict or nested dict."""
    items = tree.items() if isinstance(tree, dict) else tree.to_dict().items()
    flat = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def tupleize(value: Any) -> Any:
    """JSON lists back to the tuples that the config files use (image_size, features...)."""
    if isinstance(value, dict):
        return {k: tupleize(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(tupleize(v) for v in value)
    return value
