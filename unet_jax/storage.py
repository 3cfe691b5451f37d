"""Paths that may be cloud storage URLs (``gs://bucket/run``): the one parser of them.

Every path the commands take (a workdir, ``config.data_dir``, ``config.folder``, an image,
``--out``) goes through :func:`path`: a local path stays a ``pathlib.Path``; a URL becomes
an ``etils.epath.Path``, read and written through the scheme's fsspec client (``gcsfs``
for ``gs://``), as Flax, orbax and TFDS do. Both have the same pathlib methods, so the code
that uses them is one. A URL is never turned into a local folder named ``gs:``: an unknown
scheme, or a scheme whose client is not installed, is a `StorageError` (exit code 2).

See docs/CLOUD_STORAGE.md.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
from typing import Any

from unet_jax.errors import UserError, import_optional

# scheme -> (its fsspec client module, how to install it); the schemes etils.epath serves.
CLIENTS = {
    "gs": ("gcsfs", "pip install 'unet-jax[gcs]'"),
    "s3": ("s3fs", "pip install s3fs"),
    "az": ("adlfs", "pip install adlfs"),
}
_LOST_SLASH = {f"{scheme}:" for scheme in CLIENTS}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Where a bucket's data is copied on each host (grain reads local files only).
CACHE_ENV_VAR = "UNET_JAX_CACHE"

AnyPath = Any  # pathlib.Path or etils.epath.Path: the same methods


class StorageError(UserError, ValueError):
    """A URL that cannot be used here: unknown scheme, or its client package is missing."""


def scheme_of(value: Any) -> str | None:
    """``"gs"`` for ``gs://b/x`` (also of an epath.Path), None for a local path."""
    match = _URL.match(os.fspath(value) if isinstance(value, os.PathLike) else str(value))
    return match.group(1).lower() if match else None


def is_url(value: Any) -> bool:
    """Whether ``value`` (a string or path) names cloud storage rather than a local path."""
    return value is not None and scheme_of(value) is not None


def path(value: str | os.PathLike, *, what: str = "path") -> AnyPath:
    """The path object of a command's path argument, local or URL.

    Args:
      value: a local path, or a URL such as ``gs://bucket/run``.
      what: what the value is, for the message (``"--workdir"``, ``"config.folder"``).

    Returns:
      ``pathlib.Path`` for a local path; ``etils.epath.Path`` for a URL.

    Raises:
      StorageError: an unknown scheme, or its client package is not installed.
    """
    scheme = scheme_of(value)
    if scheme is None:
        local = value if isinstance(value, pathlib.Path) else pathlib.Path(value)
        if local.parts and local.parts[0] in _LOST_SLASH:
            # gs:/b/run: a URL passed through pathlib.Path (or typed so): never a local gs: folder
            raise StorageError(f"{what} {value}: write the URL as {local.parts[0]}//...")
        return local
    text = os.fspath(value)
    if scheme not in CLIENTS:
        known = ", ".join(f"{s}://" for s in CLIENTS)
        raise StorageError(
            f"{what} {text}: unknown storage scheme {scheme}://; use a local path or "
            f"one of {known} (gs:// needs: {CLIENTS['gs'][1]})"
        )
    module, install = CLIENTS[scheme]
    import_optional(module, StorageError, f"{what} {text}: {scheme}:// needs {module}: {install}")
    from etils import epath  # imported here: local runs never need it

    return epath.Path(text)


def local_cache(url: AnyPath, *, kind: str) -> pathlib.Path:
    """The local folder that holds this process' copy of ``url``.

    Args:
      url: a cloud storage URL.
      kind: a subfolder naming what is cached (``"data"``).

    Returns:
      ``$UNET_JAX_CACHE`` (default ``~/.cache/unet_jax``)
      ``/<kind>/process<i>/<scheme>/<bucket>/<path>``.
    """
    import jax  # imported here: the process index keeps processes on one host apart

    base = pathlib.Path(os.environ.get(CACHE_ENV_VAR, "~/.cache/unet_jax")).expanduser()
    scheme, _, rest = os.fspath(url).partition("://")
    return base / kind / f"process{jax.process_index()}" / scheme / rest.strip("/")


def download(url: AnyPath, target: pathlib.Path) -> int:
    """Copies the files below ``url`` into ``target``, skipping those already there.

    A local file of the same size is taken as the same (the prepared data and image files
    are written once), so running again copies nothing and keeps the files' times.

    Args:
      url: a cloud storage folder (or one file).
      target: the local folder.

    Returns:
      How many files were copied.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(os.fspath(url))
    root = root.rstrip("/")
    copied = 0
    for remote, info in fs.find(root, detail=True).items():
        relative = remote[len(root) :].lstrip("/")
        local = target / relative if relative else target
        if local.is_file() and local.stat().st_size == info.get("size"):
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(local))
        copied += 1
    return copied


def upload(source: pathlib.Path, url: AnyPath) -> None:
    """Copies one local file to ``url`` (one object: readers see the old or the new one)."""
    import fsspec

    fs, target = fsspec.core.url_to_fs(os.fspath(url))
    fs.put_file(str(source), target)


def rmtree(folder: AnyPath) -> None:
    """Removes ``folder`` and everything below it, local or in a bucket (none: no error)."""
    if is_url(folder):
        folder.rmtree(missing_ok=True)
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def file_size(file: AnyPath) -> int:
    """Bytes of one file, local or in a bucket (epath's stat calls it ``length``)."""
    stat = file.stat()
    return stat.st_size if hasattr(stat, "st_size") else stat.length


def write_atomically(path: AnyPath, text: str) -> None:
    """Replaces ``path`` with ``text`` so that a crash leaves either the old or the new file.

    The text goes to a temporary file in the same directory (same filesystem), is flushed
    to disk, then renamed over ``path`` with ``os.replace`` (atomic on POSIX). In a bucket
    one upload is one object, replaced whole.
    """
    if is_url(path):
        path.write_text(text)
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` (or its cause) is a storage client failing to reach its service.

    gcsfs gives up after its retries with aiohttp's connection errors or its own HttpError;
    with a local workdir none of these is raised.
    """
    seen = error
    while seen is not None:
        module = type(seen).__module__.split(".")[0]
        if module in ("aiohttp", "gcsfs"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
