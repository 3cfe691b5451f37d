"""python -m unet_jax.predict: image rules, outputs that round-trip, batching, errors.

Oracles: the data set's own label decoder (datasets/lyft_udacity/decode.py), PIL's
NEAREST resize, hand-made images of every mode, and the model applied by hand.
"""

import io
import json
import struct
import subprocess
import sys
import zlib

import ml_collections
import numpy as np
import pytest
from PIL import Image

from datasets.lyft_udacity.decode import decode_png
from tests.conftest import REPO_ROOT
from tests.evaluation.test_eval import tiny_run
from unet_jax.data.image_ops import resize_nearest
from unet_jax.deploy import predict
from unet_jax.deploy.options import SegmenterOptions
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import load_run, make_apply_fn


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _raw_png(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """A valid all-zero PNG of any bit depth / colour type, written by hand."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" + bytes(width * channels * bit_depth // 8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------
# Reading images.
# ----------------------------------------------------------------------------


def test_accepted_image_modes_are_read_as_stored(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    np.testing.assert_array_equal(
        predict.decode_image(_png_bytes(Image.fromarray(rgb)), name="rgb.png"), rgb
    )
    out = predict.decode_image(_png_bytes(Image.fromarray(grey)), name="grey.png")
    np.testing.assert_array_equal(out, grey[..., None])  # one band, as stored
    # An 8-bit RGB model takes it repeated to RGB, as before.
    rgb_model = ml_collections.ConfigDict({"model": {"in_channels": 3, "input_dtype": "uint8"}})
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    np.testing.assert_array_equal(
        predict.read_model_input(path, config=rgb_model), np.repeat(grey[..., None], 3, axis=-1)
    )
    grey16 = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
    out = predict.decode_image(_png_bytes(Image.fromarray(grey16)), name="g16.png")
    np.testing.assert_array_equal(out, grey16[..., None])  # all 16 bits
    opaque = np.concatenate([rgb, np.full((5, 7, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(
        predict.decode_image(_png_bytes(Image.fromarray(opaque)), name="rgba.png"), rgb
    )
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    np.testing.assert_array_equal(
        predict.decode_image(_png_bytes(palette), name="p.png"), np.asarray(palette.convert("RGB"))
    )
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    assert predict.decode_image(buffer.getvalue(), name="x.jpg").shape == (5, 7, 3)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: b"hello, not an image", "not an image file"),
        (lambda: _png_bytes(Image.new("RGB", (40, 30), (9, 9, 9)))[:60], "truncated"),
        (lambda: _raw_png(4, 3, 16, 2), "16-bit colour PNG"),
        (lambda: _png_bytes(Image.new("RGBA", (4, 3), (1, 2, 3, 100))), "transparent"),
        (lambda: _png_bytes(Image.new("LA", (4, 3), (1, 0))), "transparent"),
    ],
)
def test_rejected_images_name_the_file(make, match):
    with pytest.raises(predict.ImageError, match=rf"^frame_07\.png: .*{match}"):
        predict.decode_image(make(), name="frame_07.png")


def test_read_image_of_a_missing_file(tmp_path):
    with pytest.raises(predict.ImageError, match="nope.png: cannot read"):
        predict.read_image(tmp_path / "nope.png")


def test_expand_inputs(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.png", "a/deep/y.jpg", "a/notes.txt", "z.png"):
        (tmp_path / name).write_bytes(b"")
    found = predict.expand_inputs([tmp_path / "a", str(tmp_path / "*.png"), tmp_path / "z.png"])
    assert [(p.path.name, str(p.name)) for p in found] == [
        ("y.jpg", "deep/y"),
        ("x.png", "x"),
        ("z.png", "z"),
    ]
    with pytest.raises(predict.InputError, match="does not exist"):
        predict.expand_inputs([tmp_path / "missing.png"])
    with pytest.raises(predict.InputError, match="matches no image"):
        predict.expand_inputs([str(tmp_path / "*.bmp")])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"")
    with pytest.raises(predict.InputError, match="would both be written as x.png"):
        predict.expand_inputs([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize("source", [(13, 21), (32, 32), (600, 800)])
def test_resize_nearest_is_pils_nearest(source):
    rng = np.random.default_rng(3)
    label = rng.integers(0, 13, source, dtype=np.uint8)
    for size in ((45, 61), (40, 50), (7, 9), (13, 21), (26, 20), (600, 800), (128, 128)):
        expected = np.asarray(Image.fromarray(label).resize(size[::-1], Image.Resampling.NEAREST))
        np.testing.assert_array_equal(resize_nearest(label, *size), expected)
    # Several channels (probabilities) move together with the label.
    stacked = np.stack([label, 255 - label], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(
        resize_nearest(stacked, 45, 61)[..., 1],
        255 - resize_nearest(label, 45, 61),
    )


# ----------------------------------------------------------------------------
# End to end on the tiny run.
# ----------------------------------------------------------------------------


def test_predict_writes_labels_that_round_trip_and_match_the_model(tiny, tmp_path):
    rng = np.random.default_rng(4)
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    images = {
        "a": rng.integers(0, 256, (45, 61, 3), dtype=np.uint8),
        "sub/b": rng.integers(0, 256, (45, 61, 3), dtype=np.uint8),
        "c": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
    }
    for name, image in images.items():
        Image.fromarray(image).save(inputs / f"{name}.png")
    out = tmp_path / "out"
    result = predict.predict_files(
        tiny.workdir,
        [inputs],
        out,
        probabilities=True,
        segment=SegmenterOptions(batch_size=2),
        progress=False,
    )
    assert len(result["images"]) == 3 and result["errors"] == []
    run = load_run(tiny.workdir)
    apply_fn = make_apply_fn(run.model)
    for name, image in images.items():
        data = (out / "labels" / f"{name}.png").read_bytes()
        label = decode_png(data, name=name, kind="label")  # the data set's own decoder
        with Image.open(io.BytesIO(data)) as pil:
            assert pil.mode == "RGB" and np.asarray(pil)[..., 1:].max() == 0
        # Oracle: resize to the training size, apply the model, argmax, PIL NEAREST back.
        small = np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR))
        ids = np.asarray(apply_fn(run.variables, small[None])).argmax(-1)[0].astype(np.uint8)
        back = np.asarray(Image.fromarray(ids).resize(image.shape[1::-1], Image.NEAREST))
        np.testing.assert_array_equal(label, back)
        probs = np.load(out / "probabilities" / f"{name}.npy")
        assert probs.dtype == np.float16 and probs.shape == image.shape[:2] + (13,)
        np.testing.assert_allclose(probs.astype(np.float32).sum(-1), 1.0, atol=1e-2)
        chosen = np.take_along_axis(probs, label[..., None].astype(np.int64), -1)[..., 0]
        np.testing.assert_array_equal(chosen, probs.max(-1))  # label = argmax (ties aside)
        overlay = np.asarray(Image.open(out / "overlays" / f"{name}.png"))
        colour = read_run_classes(run.workdir).colorize(label)
        expected = np.rint(0.5 * image.astype(float) + 0.5 * colour.astype(float))
        np.testing.assert_allclose(overlay, expected, atol=1)
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["checkpoint"]["step"] == run.step
    assert {r["scale"] for r in manifest["images"]} == {"resize"}


def test_native_mode_pads_at_the_image_size(tiny, tmp_path):
    image = np.random.default_rng(5).integers(0, 256, (30, 43, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "frame.png")
    result = predict.predict_files(
        tiny.workdir, [tmp_path / "frame.png"], tmp_path / "out", scale="native", progress=False
    )
    assert result["images"][0]["scale"] == "native" and not result["images"][0]["tiled"]
    label = decode_png(
        (tmp_path / "out" / "labels" / "frame.png").read_bytes(), name="frame", kind="label"
    )
    run = load_run(tiny.workdir)
    padded = np.pad(image, ((0, 2), (0, 1), (0, 0)), mode="reflect")  # to 32x44
    logits = np.asarray(run.model.apply(run.variables, padded[None], train=False))
    np.testing.assert_array_equal(label, logits[0, :30, :43].argmax(-1))


def test_cli_skips_bad_images_and_exits_non_zero(tiny, tmp_path, capsys):
    good = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(_png_bytes(Image.fromarray(good))[:50])
    code = predict.main(
        [str(tmp_path / "*.png"), "--workdir", str(tiny.workdir), "--out", str(tmp_path / "o")]
        + ["--progress=false"]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "broken.png: unreadable or truncated image" in captured.err
    assert (tmp_path / "o" / "labels" / "good.png").is_file()
    assert not (tmp_path / "o" / "labels" / "broken.png").exists()


def test_cli_bad_workdir_and_checkpoint(tiny, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    args = [str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--progress=false"]
    assert predict.main(args + ["--workdir", str(tmp_path / "gone")]) == 2
    assert f"workdir {tmp_path / 'gone'} does not exist" in capsys.readouterr().err
    assert predict.main(args + ["--workdir", str(tiny.workdir), "--checkpoint", "12x"]) == 2
    assert "'12x'" in capsys.readouterr().err
    # The module entry point, in a fresh interpreter: message, no traceback.
    result = subprocess.run(
        [sys.executable, "-m", "unet_jax.predict", *args, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "has no config.json" in result.stderr and "Traceback" not in result.stderr


def test_only_non_images_leave_no_empty_folders_and_a_lone_momentum_is_refused(
    tiny, tmp_path, capsys
):
    (tmp_path / "notes.txt").write_text("not an image")
    out = tmp_path / "o"
    args = ["--workdir", str(tiny.workdir), "--out", str(out), "--progress=false"]
    assert predict.main([str(tmp_path / "notes.txt"), *args]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json"]  # no empty folders
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    lone = [str(tmp_path / "x.png"), "--workdir", str(tiny.workdir), "--adapt_momentum=0.5"]
    assert predict.main([*lone, "--out", str(tmp_path / "o2"), "--progress=false"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: adapt_momentum=0.5 applies with adapt_bn=stream only (adapt_bn is 'off')"
    )
    assert not (tmp_path / "o2").exists()
