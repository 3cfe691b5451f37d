"""Hypothesis fuzzing of the lyft_udacity decode/validate code and zip reading.

Properties: malformed PNG bytes, odd modes, wrong sizes and hostile zip member
names only ever raise `DataError` (whose message names the file or archive),
accepted inputs decode to the right pixels, and nothing is written anywhere.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from datasets.lyft_udacity import decode, sources
from datasets.lyft_udacity.errors import DataError
from datasets.lyft_udacity.lyft_udacity_dataset_builder import archive_example
from tests.datasets.builder_helpers import chunk, png, raw_png

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NAME = "fuzz/dataA/CameraRGB/02_00_000.png"


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each chunk of a well-formed PNG."""
    out, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _check_decoded(data: bytes, kind: str) -> None:
    """decode_png either raises DataError naming NAME or returns well-formed pixels."""
    try:
        array = decode.decode_png(data, name=NAME, kind=kind)
    except DataError as e:
        assert NAME in str(e)
        return
    header = decode.read_png_header(data, name=NAME)
    assert header.bit_depth == 8 and header.color_type in (2, 6)
    assert array.dtype == np.uint8
    expected = (header.height, header.width) + ((3,) if kind == "image" else ())
    assert array.shape == expected


small_images = st.builds(
    lambda h, w, seed, alpha: np.random.default_rng(seed).integers(
        0, 256, (h, w, 4 if alpha else 3), dtype=np.uint8
    ),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)


@FUZZ
@given(
    image=small_images,
    kind=st.sampled_from(["image", "label"]),
    mutation=st.sampled_from(["truncate", "flip", "insert", "delete"]),
    position=st.floats(0, 1),
    payload=st.binary(min_size=1, max_size=8),
)
def test_mutated_png_bytes(image, kind, mutation, position, payload):
    data = bytearray(png(image))
    at = int(position * (len(data) - 1))
    if mutation == "truncate":
        data = data[:at]
    elif mutation == "flip":
        data[at] ^= payload[0] or 1
    elif mutation == "insert":
        data[at:at] = payload
    else:
        del data[at : at + len(payload)]
    _check_decoded(bytes(data), kind)


@FUZZ
@given(
    image=small_images,
    kind=st.sampled_from(["image", "label"]),
    target=st.integers(0, 10),
    payload=st.binary(max_size=64),
    keep=st.floats(0, 1),
)
def test_chunk_payloads_with_valid_crcs(image, kind, target, payload, keep):
    """Corrupt chunk contents behind correct CRCs: the decoder itself must fail cleanly."""
    parts = _chunks(png(image))
    index = target % len(parts)
    ctype, body = parts[index]
    parts[index] = (ctype, body[: int(keep * len(body))] + payload)
    data = decode.PNG_SIGNATURE + b"".join(chunk(t, b) for t, b in parts)
    _check_decoded(data, kind)


@FUZZ
@given(
    width=st.one_of(st.integers(0, 40), st.integers(0, 2**31)),
    height=st.one_of(st.integers(0, 40), st.integers(0, 2**31)),
    bit_depth=st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]),
    color_type=st.integers(0, 7),
    interlace=st.integers(0, 2),
    pixels=st.binary(max_size=300),
    compress=st.booleans(),
)
def test_random_headers(width, height, bit_depth, color_type, interlace, pixels, compress):
    ihdr = (
        width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + bytes([bit_depth, color_type, 0, 0, interlace])
    )
    idat = zlib.compress(pixels) if compress else pixels
    data = decode.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    _check_decoded(data, "image")


def _encode_mode(array: np.ndarray, mode: str) -> tuple[bytes, bool]:
    """PNG bytes of an RGB array converted to mode; returns (bytes, acceptable)."""
    if mode == "RGB16":
        h, w = array.shape[:2]
        return raw_png(w, h, 16, 2), False
    image = Image.fromarray(array)
    if mode == "RGBA_opaque":
        image = image.convert("RGBA")
    elif mode == "RGBA_transparent":
        image = image.convert("RGBA")
        image.putpixel((0, 0), (1, 2, 3, 0))
    else:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), mode in ("RGB", "RGBA_opaque")


# (Pillow cannot write 32-bit mode "I" PNGs; "I;16" is 16-bit greyscale.)
MODES = ["RGB", "RGBA_opaque", "RGBA_transparent", "L", "LA", "P", "1", "I;16", "RGB16"]


@FUZZ
@given(
    image_mode=st.sampled_from(MODES),
    label_mode=st.sampled_from(MODES),
    image_size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    label_size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    seed=st.integers(0, 2**32 - 1),
    size=st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(1, 9))),
)
def test_process_pair_sizes_and_modes(image_mode, label_mode, image_size, label_size, seed, size):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*image_size, 3), dtype=np.uint8)
    label = rng.integers(0, 256, (*label_size, 3), dtype=np.uint8)
    image_data, image_ok = _encode_mode(image, image_mode)
    label_data, label_ok = _encode_mode(label, label_mode)
    try:
        out = decode.process_pair(
            image_data, label_data, image_name="img.png", label_name="seg.png", size=size
        )
    except DataError as e:
        message = str(e)
        if not image_ok:
            assert "img.png" in message
        elif not label_ok:
            assert "seg.png" in message
        else:
            assert image_size != label_size and "seg.png" in message and "img.png" in message
        return
    assert image_ok and label_ok and image_size == label_size
    ids = decode.decode_png(png(label), name="seg.png", kind="label")
    expected = np.where(ids > 12, 255, ids)
    got = np.asarray(Image.open(io.BytesIO(out.label_png)))
    if size is None:
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out.image_png))), image)
    else:
        assert got.shape == size
        assert set(np.unique(got)) <= set(np.unique(expected))


SEGMENTS = ["..", ".", "", "a", "dataA", "CameraRGB", "CameraSeg", "02_00_000.png", "C:", "\0"]
member_names = st.builds(
    lambda lead, parts, sep: lead + sep.join(parts),
    st.sampled_from(["", "/", "\\", "C:/", "../"]),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5),
    st.sampled_from(["/", "\\"]),
)


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    return tmp_path_factory.mktemp("zipfuzz")


@FUZZ
@given(
    names=st.lists(member_names, min_size=1, max_size=6, unique=True),
    valid=st.lists(st.booleans(), min_size=6, max_size=6),
    data=st.data(),
)
def test_zip_member_names_and_contents(fuzz_base, names, valid, data):
    work = fuzz_base / f"ex{len(os.listdir(fuzz_base))}"
    manual = work / "manual"
    manual.mkdir(parents=True)
    archive_path = manual / "download"
    good = png(np.full((3, 4, 3), 7, np.uint8))
    with zipfile.ZipFile(archive_path, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": names cut at NUL
        # Always include one valid frame so the archive is recognisably the data set.
        archive.writestr("dataB/dataB/CameraRGB/02_01_000.png", good)
        archive.writestr("dataB/dataB/CameraSeg/02_01_000.png", good)
        for name, ok in zip(names, valid, strict=False):
            body = good if ok else data.draw(st.binary(max_size=40))
            archive.writestr(zipfile.ZipInfo(name), body)
    before = sorted(p.relative_to(fuzz_base) for p in fuzz_base.rglob("*"))
    try:
        source = sources.find_source(str(manual))
        assert source is not None and source.pairs
        for pair in source.pairs:
            key, example, _ = archive_example(
                source, pair, high_ids="ignore", hood="keep", size=None
            )
            assert key == pair.name and example["name"] == pair.name
            assert ".." not in pair.name.split("/") and not pair.name.startswith("/")
    except DataError as e:
        assert str(archive_path) in str(e)
    after = sorted(p.relative_to(fuzz_base) for p in fuzz_base.rglob("*"))
    assert after == before  # nothing extracted or written, in or above the manual dir


@FUZZ
@given(
    paths=st.lists(
        st.builds(
            lambda parts: "/".join(parts),
            st.lists(
                st.sampled_from(["dataA", "CameraRGB", "CameraSeg", "x.png", "y.PNG", ".h.png"]),
                min_size=1,
                max_size=4,
            ),
        ),
        max_size=12,
    )
)
def test_pair_frames_pairs_or_names_the_problem(paths):
    try:
        pairs = sources.pair_frames(paths, where="WHERE")
    except DataError as e:
        assert "WHERE" in str(e)
        return
    present = set(paths)
    for pair in pairs:
        assert pair.image in present and pair.label in present
        assert pair.image.split("/")[-2] == "CameraRGB" and pair.label.split("/")[-2] == "CameraSeg"
    assert len({p.name for p in pairs}) == len(pairs)
