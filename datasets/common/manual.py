"""The manual-download directory of a builder whose archive must be fetched by hand."""

from __future__ import annotations

import os
from typing import Any


def manual_dir(builder: Any, dl_manager: Any) -> str:
    """The absolute manual directory: the configured one, else <data_dir>/downloads/manual.

    ``DownloadManager.manual_dir`` raises a bare AssertionError when the directory is
    missing, so the configured path is read directly.
    """
    path = getattr(dl_manager, "_manual_dir", None) or (
        builder.data_dir_root / "downloads" / "manual"
    )
    return os.path.abspath(os.fspath(path))


def what_is_there(directory: str, *, expected: str) -> str:
    """A line saying what ``directory`` holds instead of the data ('' if missing or empty)."""
    if not os.path.isdir(directory) or not (entries := sorted(os.listdir(directory))):
        return ""
    listed = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
    return f"It holds no zip archive and no {expected}: {listed}"
