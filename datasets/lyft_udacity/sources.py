"""Finding the image/label pairs in the manual directory: a zip archive or a tree.

Nothing is ever extracted: zip members are read straight from the archive.

Accepted layouts (any folder depth above them):
  * Kaggle zip, any file name: ``dataA/dataA/CameraRGB/02_00_000.png`` with
    ``dataA/dataA/CameraSeg/02_00_000.png``, ... through dataE;
  * the same tree extracted (nested), or extracted flat (``dataA/CameraRGB``);
  * the original 2018 challenge layout ``Train/CameraRGB`` + ``Train/CameraSeg``.

A frame is a ``*.png`` (any case of the extension) whose folder is named
exactly ``CameraRGB``; its label is the file of the same name in the sibling
``CameraSeg`` folder. Hidden files and folders and ``__MACOSX`` metadata are
skipped. The frame's ``name`` is ``<folder above CameraRGB>/<file name>``,
e.g. ``dataA/02_00_000.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import zipfile
from collections.abc import Iterable

from datasets.lyft_udacity.decode import MAX_FILE_BYTES
from datasets.lyft_udacity.errors import DataError

IMAGE_DIR = "CameraRGB"
LABEL_DIR = "CameraSeg"
_MAX_LISTED = 5  # missing files listed in one error message


@dataclasses.dataclass(frozen=True)
class FramePair:
    """One frame: its data-set name and where its two PNGs are in the source."""

    name: str  # e.g. "dataA/02_00_000.png"
    image: str  # relative POSIX path in the tree, or zip member name
    label: str


def _skipped(parts: list[str]) -> bool:
    """Hidden files/folders and macOS resource forks (``__MACOSX/``, ``._x.png``)."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def pair_frames(paths: Iterable[str], *, where: str) -> list[FramePair]:
    """Pairs the CameraRGB and CameraSeg PNGs among relative POSIX paths.

    Args:
      paths: every file path of the source, relative, ``/``-separated.
      where: the source's location (directory or archive), for messages.

    Returns:
      The pairs sorted by name; empty if there is no CameraRGB/CameraSeg PNG.

    Raises:
      DataError: an image without its label or a label without its image, or
        two frames with the same name.
    """
    found: dict[str, dict[tuple[str, str], str]] = {IMAGE_DIR: {}, LABEL_DIR: {}}
    for path in paths:
        parts = path.split("/")
        if len(parts) < 2 or _skipped(parts) or not parts[-1].lower().endswith(".png"):
            continue
        if parts[-2] in found:
            found[parts[-2]][("/".join(parts[:-2]), parts[-1])] = path
    images, labels = found[IMAGE_DIR], found[LABEL_DIR]
    problems = [
        f"image {images[k]} has no label (expected {_join(k[0], LABEL_DIR, k[1])})"
        for k in sorted(images.keys() - labels.keys())
    ] + [
        f"label {labels[k]} has no image (expected {_join(k[0], IMAGE_DIR, k[1])})"
        for k in sorted(labels.keys() - images.keys())
    ]
    if problems:
        more = len(problems) - _MAX_LISTED
        listed = "\n  ".join(problems[:_MAX_LISTED]) + (
            f"\n  ... and {more} more" if more > 0 else ""
        )
        raise DataError(f"{where}: unpaired files:\n  {listed}")
    pairs: dict[str, FramePair] = {}
    for key in sorted(images):  # sorted: the same duplicate is reported every time
        prefix, file_name = key
        name = f"{prefix.rsplit('/', 1)[-1]}/{file_name}" if prefix else file_name
        if name in pairs:
            raise DataError(
                f"{where}: two frames are both named {name}: {pairs[name].image} and {images[key]}"
            )
        pairs[name] = FramePair(name=name, image=images[key], label=labels[key])
    return [pairs[n] for n in sorted(pairs)]


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(member: str, *, archive: str) -> str:
    """Rejects zip member names that could point outside an extraction target.

    Nothing is extracted, but a hostile name means a hostile (or broken)
    archive, so it is refused rather than skipped.

    Args:
      member: the member name as stored in the archive.
      archive: the archive's path, for messages.

    Returns:
      The name with ``\\`` separators turned into ``/``.

    Raises:
      DataError: empty name, absolute path, drive letter, ``..`` component or
        NUL byte (zipfile cuts names at NUL, leaving them empty or shortened).
    """
    normal = member.replace("\\", "/")
    if (
        not normal
        or "\0" in normal
        or normal.startswith("/")
        or _DRIVE.match(normal)
        or ".." in normal.split("/")
    ):
        raise DataError(
            f"{archive}: unsafe member name {member!r} (empty, absolute or with a '..' "
            "component); refusing this archive"
        )
    return normal


class TreeSource:
    """Frames in an extracted directory tree."""

    def __init__(self, root: str, pairs: list[FramePair]):
        """Wraps pairs found by `find_source`.

        Args:
          root: the directory the pair paths are relative to.
          pairs: the frames.
        """
        self.root = root
        self.location = root  # for messages
        self.pairs = pairs

    def close(self) -> None:
        """Nothing to release (files are opened per read)."""

    def describe(self, path: str) -> str:
        """Returns the full path of a file, for messages."""
        return os.path.join(self.root, *path.split("/"))

    def stamp(self, path: str) -> str:
        """Size and modification time of a file (for `fingerprint`)."""
        st = os.stat(self.describe(path))
        return f"{st.st_size}:{st.st_mtime_ns}"

    def read(self, path: str) -> bytes:
        """Reads one file (at most `MAX_FILE_BYTES`).

        Args:
          path: a path from `pairs`.

        Returns:
          The file's bytes.

        Raises:
          DataError: unreadable or too large.
        """
        full = self.describe(path)
        try:
            with open(full, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise DataError(f"{full}: cannot read ({e})") from e
        if len(data) > MAX_FILE_BYTES:
            raise DataError(f"{full}: larger than {MAX_FILE_BYTES} bytes")
        return data


class ZipSource:
    """Frames read directly from a zip archive (never extracted)."""

    def __init__(self, path: str, pairs: list[FramePair], members: dict[str, zipfile.ZipInfo]):
        """Wraps pairs found by `find_source`.

        Args:
          path: the archive.
          pairs: the frames (paths are normalised member names).
          members: normalised name -> ZipInfo.
        """
        self.path = path
        self.location = path  # for messages
        self.pairs = pairs
        self._members = members
        self._local = threading.local()  # one open ZipFile per reading thread
        self._opened: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Closes the archive handles opened by `read` (it reopens them if needed)."""
        with self._lock:
            for archive in self._opened:
                archive.close()
            self._opened = []
            self._local = threading.local()

    def describe(self, path: str) -> str:
        """Returns ``archive:member``, for messages."""
        return f"{self.path}:{path}"

    def stamp(self, path: str) -> str:
        """Size and CRC of a member (for `fingerprint`)."""
        info = self._members[path]
        return f"{info.file_size}:{info.CRC}"

    def read(self, path: str) -> bytes:
        """Reads one member (at most `MAX_FILE_BYTES`), checking its CRC.

        Args:
          path: a path from `pairs`.

        Returns:
          The member's bytes.

        Raises:
          DataError: corrupt member (bad CRC, bad compressed data), unsupported
            compression, or too large.
        """
        info = self._members[path]
        where = self.describe(path)
        if info.file_size > MAX_FILE_BYTES:
            raise DataError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self.path)
            with self._lock:
                self._opened.append(archive)
        try:
            with archive.open(info) as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except Exception as e:  # noqa: BLE001 - zipfile/zlib raise many types on bad data
            raise DataError(f"{where}: corrupt archive member ({type(e).__name__}: {e})") from e
        if len(data) > MAX_FILE_BYTES:
            raise DataError(f"{where}: larger than {MAX_FILE_BYTES} bytes")
        return data


Source = TreeSource | ZipSource


def fingerprint(source: Source, *, split_group: str | None) -> str:
    """A digest of what preparation reads: where the frames are, their names, sizes and
    modification times (CRCs in a zip) and the grouping; it changes when the data does."""
    h = hashlib.sha256(f"{os.path.abspath(source.location)}|group={split_group or ''}\n".encode())
    for pair in source.pairs:
        h.update(f"{pair.name}|{source.stamp(pair.image)}|{source.stamp(pair.label)}\n".encode())
    return h.hexdigest()


def walk_files(root: str) -> list[str]:
    """Relative POSIX paths of all files below root, following directory symlinks once."""
    out = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out += [prefix + f for f in filenames]
    return out


def zip_members(path: str) -> dict[str, zipfile.ZipInfo]:
    """The file members of a zip archive by checked name (folder entries left out).

    Raises:
      DataError: an unreadable archive, or a hostile member name (see `check_member_name`).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: unreadable zip archive ({e})") from e
    members = {}
    for info in infos:
        name = check_member_name(info.filename, archive=path)
        if not name.endswith("/"):  # not a folder entry
            members[name] = info
    return members


def _open_zip(path: str) -> ZipSource:
    members = zip_members(path)
    return ZipSource(path, pair_frames(members, where=path), members)


def find_source(manual_dir: str) -> Source | None:
    """Finds the data in the manual directory.

    An extracted tree (any CameraRGB/CameraSeg PNG below ``manual_dir``) is
    used if present; otherwise the single zip archive directly in
    ``manual_dir`` (recognised by content, whatever its file name).
    ``manual_dir`` may also be the zip archive itself.

    Args:
      manual_dir: the directory to search (or the archive).

    Returns:
      The source, or None if the directory is missing or holds no data.

    Raises:
      DataError: several zip archives and no tree, unpaired files, unsafe
        member names, unreadable archive.
    """
    if os.path.isfile(manual_dir) and zipfile.is_zipfile(manual_dir):
        archives = [manual_dir]
    elif not os.path.isdir(manual_dir):
        return None
    else:
        pairs = pair_frames(walk_files(manual_dir), where=manual_dir)
        if pairs:
            return TreeSource(manual_dir, pairs)
        archives = zips_in(manual_dir)
    if not archives:
        return None
    source = _open_zip(archives[0])
    if not source.pairs:
        raise DataError(
            f"{archives[0]}: no CameraRGB/CameraSeg PNGs in this zip archive; "
            "is it the Kaggle lyft-udacity-challenge archive?"
        )
    return source


def zips_in(manual_dir: str) -> list[str]:
    """The zip archive directly in manual_dir, as a list of 0 or 1 paths.

    Raises:
      DataError: several zip archives.
    """
    archives = sorted(
        path
        for entry in os.listdir(manual_dir)
        if not entry.startswith(".")
        and os.path.isfile(path := os.path.join(manual_dir, entry))
        and zipfile.is_zipfile(path)
    )
    if len(archives) > 1:
        raise DataError(
            f"{manual_dir}: several zip archives ({', '.join(map(os.path.basename, archives))}); "
            "keep only the Kaggle one"
        )
    return archives
