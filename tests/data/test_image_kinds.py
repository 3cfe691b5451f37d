"""Images as they are stored: reading, preparing, normalising, augmenting and showing grey,
16-bit and multi-band images.

Oracles: the arrays the test writes with tifffile, PIL and numpy (read back bit-exact),
numpy's percentile/mean/std on the training split's pixels, the hand formulas of the
normalisation, of SMP's first-convolution adaptation and of the per-band jitter.
"""

import json
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
import tifffile
from PIL import Image

from datasets.common.errors import DataError
from datasets.folder import folder_dataset_builder as fdb
from tests import encoder_helpers
from tests.image_kinds import make_folder
from unet_jax.configs import folder as folder_config
from unet_jax.data import augment, display, image_bytes, image_files, image_ops
from unet_jax.data.run_data import DataConfigError, with_data_images
from unet_jax.errors import ConfigError
from unet_jax.model import encoder_weights, input_norm
from unet_jax.model.resnet import ENCODER_MODULE, ResNetUNet
from unet_jax.model.unet import UNet

RNG = np.random.default_rng(0)
KINDS = {
    "uint8x5": RNG.integers(0, 256, (9, 11, 5)).astype(np.uint8),
    "uint16x1": RNG.integers(0, 65536, (9, 11, 1)).astype(np.uint16),
    "uint16x4": RNG.integers(0, 65536, (9, 11, 4)).astype(np.uint16),
    "int16x7": RNG.integers(-32768, 32768, (9, 11, 7)).astype(np.int16),
    "float32x2": RNG.normal(0, 1e3, (9, 11, 2)).astype(np.float32),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("planar", [False, True])
def test_tiff_of_any_bands_and_dtype_reads_back_bit_exact(tmp_path, kind, planar):
    array = KINDS[kind]
    path = tmp_path / "a.tif"
    if planar and array.shape[-1] > 1:
        tifffile.imwrite(
            path, np.moveaxis(array, -1, 0), photometric="minisblack", planarconfig="separate"
        )
    else:
        if array.shape[-1] == 1:
            tifffile.imwrite(path, array[..., 0])
        else:
            tifffile.imwrite(path, array, photometric="minisblack", planarconfig="contig")
    read = image_files.read_image(path)
    assert read.dtype == array.dtype and read.shape == array.shape
    np.testing.assert_array_equal(read, array)
    np.testing.assert_array_equal(image_bytes.decode(image_bytes.encode(read)), array)


def test_npy_and_pillow_formats_read_back_bit_exact(tmp_path):
    np.save(tmp_path / "a.npy", KINDS["int16x7"])
    np.testing.assert_array_equal(image_files.read_image(tmp_path / "a.npy"), KINDS["int16x7"])
    grey16 = KINDS["uint16x1"][..., 0]
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    read = image_files.read_image(tmp_path / "g16.png")
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read[..., 0], grey16)  # never squashed to 8 bits
    grey8 = KINDS["uint8x5"][..., 0]
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    np.testing.assert_array_equal(image_files.read_image(tmp_path / "g8.png"), grey8[..., None])
    rgb = KINDS["uint8x5"][..., :3]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(image_files.read_image(tmp_path / "rgb.png"), rgb)
    # 8-bit RGB and grey through the prepared data's codec, exactly.
    for array in (rgb, grey8[..., None]):
        np.testing.assert_array_equal(image_bytes.decode(image_bytes.encode(array)), array)
    # An LZW TIFF (tifffile needs imagecodecs for it) falls back to Pillow.
    Image.fromarray(grey16).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(image_files.read_image(tmp_path / "lzw.tif")[..., 0], grey16)


def test_bad_images_are_one_line_errors_naming_the_file(tmp_path):
    nan = KINDS["float32x2"].copy()
    nan[2, 3, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    with pytest.raises(image_files.ImageFileError, match=r"nan\.tif: 1 NaN or infinite values"):
        image_files.read_image(tmp_path / "nan.tif")
    np.save(tmp_path / "f64.npy", np.zeros((4, 4, 2)))
    with pytest.raises(image_files.ImageFileError, match=r"f64\.npy: float64"):
        image_files.read_image(tmp_path / "f64.npy")
    rgba = np.full((4, 4, 4), 200, np.uint8)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "t.png")
    with pytest.raises(image_files.ImageFileError, match=r"t\.png: RGBA image with transparent"):
        image_files.read_image(tmp_path / "t.png")


def test_a_folder_of_mixed_band_counts_names_the_file_and_both_counts(tmp_path):
    root = make_folder(tmp_path / "d", "grey16", count=5)
    tifffile.imwrite(root / "images" / "g03.tif", np.zeros((36, 42, 3), np.uint16))
    with pytest.raises(DataError, match=r"g03\.tif: 3 band\(s\), but g00\.tif has 1"):
        fdb.make_plan(root, group_pattern=None)
    # 8-bit grey among 8-bit RGB is read as RGB, as before.
    kinds = {pathlib.Path("a.png"): (3, "uint8"), pathlib.Path("b.png"): (1, "uint8")}
    assert fdb.image_kind(kinds) == fdb.ImageKind(3, "uint8")


def test_stored_statistics_are_numpys_on_the_training_split(tmp_path):
    root = make_folder(tmp_path / "d", "int16x5", count=12)
    builder = fdb.open_builder(str(root), data_dir=str(tmp_path / "tfds"), log=lambda *_: None)
    info = builder.info.metadata["image_info"]
    assert (info["bands"], info["dtype"]) == (5, "int16")
    names = [
        str(n, "utf-8") if isinstance(n, bytes) else n
        for n in (e["name"] for e in builder.as_data_source()["train"])
    ]
    images = [np.moveaxis(tifffile.imread(root / "images" / f"{n}.tif"), 0, -1) for n in names]
    pixels = np.concatenate([i.reshape(-1, 5) for i in images]).astype(np.float64)
    low, high = np.percentile(pixels, [0.5, 99.5], axis=0)
    clipped = np.clip(pixels, low, high)
    stats = info["stats"]
    np.testing.assert_allclose(stats["low"], low, rtol=1e-12)
    np.testing.assert_allclose(stats["high"], high, rtol=1e-12)
    np.testing.assert_allclose(stats["mean"], clipped.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], clipped.std(0), rtol=1e-12)


def _model_config(**model):
    config = folder_config.get_config()
    with config.unlocked():
        for k, v in model.items():
            config.model[k] = v
    return config


STATS = {"low": [100.0], "high": [3000.0], "mean": [800.0], "std": [500.0]}


def test_the_config_takes_the_datas_kind_and_refuses_what_does_not_fit():
    config = with_data_images(_model_config(), {"bands": 1, "dtype": "uint16", "stats": STATS})
    assert config.model.in_channels == 1 and config.model.input_norm == "zscore"
    assert config.augment.saturation == 0.0  # unset: off for images that are not RGB
    rgb = with_data_images(_model_config(), None)
    assert rgb.model.input_norm == "imagenet" and rgb.augment.saturation == 0.2
    with pytest.raises(DataConfigError, match=r"in_channels=3, but .* 1 band\(s\) of uint16"):
        with_data_images(
            _model_config(in_channels=3), {"bands": 1, "dtype": "uint16", "stats": STATS}
        )
    bad = _model_config()
    bad.augment.saturation = 0.3
    with pytest.raises(ConfigError, match=r"config.augment.saturation=0.3: colour jitter needs"):
        with_data_images(bad, {"bands": 1, "dtype": "uint16", "stats": STATS})
    bad = _model_config()
    bad.augment.gamma = 1.5
    with pytest.raises(ConfigError, match=r"config.augment.gamma=1.5: must be in \[0, 1.0\)"):
        with_data_images(bad, {"bands": 1, "dtype": "uint16", "stats": STATS})
    bad = _model_config()
    bad.augment.conditions.fog.p = 0.5
    with pytest.raises(ConfigError, match=r"conditions.fog.p=0.5: the condition transforms"):
        with_data_images(bad, {"bands": 1, "dtype": "uint16", "stats": STATS})


def test_the_model_normalises_by_the_stored_rule():
    stats = {"low": [10.0, -5.0], "high": [900.0, 40.0], "mean": [300.0, 2.0], "std": [90.0, 7.0]}
    fields = input_norm.model_fields(
        ml_collections.ConfigDict({"in_channels": 2, "input_norm": "zscore", "input_stats": stats})
    )
    model = UNet(num_classes=2, features=(4,), bridge_features=4, **fields)
    x = np.array([[0, -20], [500, 3], [1000, 100]], np.int16).reshape(1, 3, 1, 2)
    expected = (np.clip(x, stats["low"], stats["high"]) - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(np.asarray(model.normalise(x)), expected, rtol=1e-6)
    # 8-bit RGB keeps ImageNet's normalisation: the model of before, field for field.
    assert input_norm.model_fields(ml_collections.ConfigDict({"input_norm": "imagenet"})) == {}


@pytest.mark.parametrize("bands", [1, 4, 7])
def test_the_first_convolution_is_adapted_as_smp_does(bands):
    model = ResNetUNet(num_classes=3, encoder="resnet18", decoder_features=(8,) * 5)
    variables = jax.eval_shape(
        lambda: model.clone(in_channels=bands, mean=(0.0,) * bands, std=(1.0,) * bands).init(
            jax.random.key(0), np.zeros((1, 64, 64, bands), np.uint8), train=False
        )
    )
    fresh = {c: variables[c][ENCODER_MODULE] for c in ("params", "batch_stats")}
    tensors = encoder_helpers.random_state_dict("resnet18")
    w = tensors["conv1.weight"]  # [64, 3, 7, 7]
    if bands == 1:
        hand = w[:, 0:1] + w[:, 1:2] + w[:, 2:3]
    elif bands == 4:
        hand = np.concatenate([w[:, 0:1], w[:, 1:2], w[:, 2:3], w[:, 0:1]], axis=1) * 3 / 4
    else:
        hand = np.concatenate([w, w, w[:, 0:1]], axis=1) * 3 / 7
    matched = encoder_weights.match_tensors(
        tensors, encoder_weights.expected_tensors(fresh), path="f", encoder="resnet18"
    )
    kernel = matched["params"][("conv1", "kernel")]
    np.testing.assert_allclose(kernel, encoder_weights.from_torch_layout(hand), rtol=1e-6)


def test_band_jitter_works_per_band_on_normalised_values():
    stats = {
        "low": [0.0, -100.0],
        "high": [1000.0, 100.0],
        "mean": [500.0, 0.0],
        "std": [200.0, 50.0],
    }
    image = RNG.integers(0, 1000, (6, 7, 2)).astype(np.uint16)
    image[..., 1] = RNG.integers(-100, 100, (6, 7))
    jitter = augment.BandIntensityJitter(stats, brightness=0.5, contrast=0.3)
    out = jitter.random_map(
        {"image": image, "label": np.zeros((6, 7), np.uint8)}, np.random.default_rng(3)
    )
    rng = np.random.default_rng(3)
    for b in range(2):
        shift, factor, _, _ = (
            rng.uniform(-0.5, 0.5),
            rng.uniform(0.7, 1.3),
            rng.uniform(1, 1),
            rng.uniform(0, 0),
        )
        y = (
            np.clip(image[..., b].astype(np.float64), stats["low"][b], stats["high"][b])
            - stats["mean"][b]
        ) / stats["std"][b]
        y = y + shift
        y = y.mean() + factor * (y - y.mean())
        np.testing.assert_allclose(
            out["image"][..., b], y * stats["std"][b] + stats["mean"][b], rtol=1e-4, atol=1e-2
        )
    assert out["image"].dtype == np.float32


def test_geometric_transforms_keep_every_band_exactly():
    image = KINDS["int16x7"]
    crop = image_ops.resize(image, height=5, width=6, method="bilinear", box=(2, 3, 8, 8))
    np.testing.assert_array_equal(crop, image[3:8, 2:8])  # native-scale crop: no resampling
    label = np.zeros(image.shape[:2], np.uint8)
    flip = augment.RandomHorizontalFlip(1.0).random_map({"image": image, "label": label}, RNG)
    np.testing.assert_array_equal(flip["image"], image[:, ::-1])


def test_pictures_stretch_grey_and_show_three_display_bands():
    grey = np.linspace(0, 4000, 101, dtype=np.float32).astype(np.uint16).reshape(1, 101, 1)
    rgb = display.to_rgb(grey)
    low, high = np.percentile(grey.astype(np.float32), [1, 99])
    expected = np.clip(np.rint((grey[..., 0] - low) * 255 / (high - low)), 0, 255)
    np.testing.assert_array_equal(rgb[..., 1], expected.astype(np.uint8))
    assert rgb.shape == (1, 101, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    bands = display.to_rgb(KINDS["int16x7"], bands=(6, 0, 3))
    np.testing.assert_array_equal(bands[..., 0], display.stretch(KINDS["int16x7"][..., 6]))
    eight_bit = KINDS["uint8x5"][..., :3]
    assert display.to_rgb(eight_bit) is eight_bit  # 8-bit RGB as it is
    with pytest.raises(ValueError, match=r"display_bands=\(9,\)"):
        display.to_rgb(KINDS["int16x7"], bands=(9,))


def test_json_of_the_stats_round_trips_through_the_run_config(tmp_path):
    config = with_data_images(_model_config(), {"bands": 1, "dtype": "uint16", "stats": STATS})
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    from unet_jax.run.loading import load_config

    loaded = load_config(tmp_path)
    assert input_norm.model_fields(loaded.model) == input_norm.model_fields(config.model)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["input_stats"] == STATS
