"""The lyft_udacity builder's command line, its default directories, that it never imports
TensorFlow, PNG decoding units, and the data set facts the library takes from the builders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import datasets
import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import decode, sources
from datasets.lyft_udacity.classes import CARLA_CLASSES
from datasets.lyft_udacity.errors import DEMO_COMMAND, KAGGLE_URL
from tests.conftest import REPO_ROOT
from tests.datasets.builder_helpers import (
    DUMMY,
    png,
    raw_png,
    read_splits,
    zip_of_dummy,
)
from unet_jax.data.sources import builder_classes

# ----------------------------------------------------------------------------- CLI, defaults, TF


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_with_default_dirs_and_zip(tmp_path):
    # HOME points at tmp: the TFDS defaults are ~/tensorflow_datasets and
    # <data_dir>/downloads/manual.
    manual = tmp_path / "tensorflow_datasets" / "downloads" / "manual"
    manual.mkdir(parents=True)
    zip_of_dummy(manual / "lyft-udacity-challenge.zip")
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    env["HOME"] = str(tmp_path)
    result = _run(["-m", "datasets.lyft_udacity", "--config", "full"], env)
    assert result.returncode == 0, result.stderr
    assert "train 18, validation 6, test 6" in result.stdout
    assert (tmp_path / "tensorflow_datasets" / "lyft_udacity" / "full" / "1.0.0").is_dir()


def test_cli_missing_archive(tmp_path):
    manual = tmp_path / "manual"
    result = _run(
        [
            "-m",
            "datasets.lyft_udacity",
            "--config",
            "full",
            "--data_dir",
            str(tmp_path),
            "--manual_dir",
            str(manual),
        ]
    )
    assert result.returncode == 2
    assert KAGGLE_URL in result.stderr and str(manual) in result.stderr
    assert DEMO_COMMAND in result.stderr
    assert "Traceback" not in result.stderr


_NO_TF_SCRIPT = r"""
import importlib.abc, json, sys
attempts = []

class Spy(importlib.abc.MetaPathFinder):
    # Records real imports of tensorflow; importlib.util.find_spec probes
    # ("is TF installed?", done by etils) are not imports.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            frame, probe = sys._getframe(1), False
            while frame:
                code = frame.f_code
                probe |= code.co_name == "find_spec" and "importlib" in code.co_filename \
                    and "util" in code.co_filename
                frame = frame.f_back
            if not probe:
                attempts.append(name)
        return None

sys.meta_path.insert(0, Spy())
sys.path.insert(0, sys.argv[1])
import datasets.lyft_udacity as lyft
builder = lyft.prepare("resized_256_nohood", data_dir=sys.argv[2], manual_dir=sys.argv[3])
source = builder.as_data_source()["train"]
example = source[0]
print(json.dumps({"attempts": attempts, "loaded": "tensorflow" in sys.modules,
                  "shape": list(example["label"].shape)}))
"""


def test_no_tensorflow_import(tmp_path):
    result = _run(["-c", _NO_TF_SCRIPT, str(REPO_ROOT), str(tmp_path), DUMMY])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"attempts": [], "loaded": False, "shape": [256, 256, 1]}


# ----------------------------------------------------------------------------- units


def test_decode_png_rejects_before_decoding_oversized_headers():
    data = raw_png(decode.MAX_PIXELS, 2, 8, 2, idat=zlib.compress(b"\0"))
    with pytest.raises(lyft.DataError, match="x.png:.*decompression-bomb"):
        decode.decode_png(data, name="x.png", kind="image")
    # Exactly at the limit is allowed past the guard (then fails on the tiny IDAT).
    data = raw_png(decode.MAX_PIXELS, 1, 8, 2, idat=zlib.compress(b"\0"))
    with pytest.raises(lyft.DataError, match="corrupt PNG"):
        decode.decode_png(data, name="x.png", kind="image")


def test_decode_png_label_is_red_channel():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode.decode_png(png(rgb), name="l", kind="label"), rgb[..., 0])
    np.testing.assert_array_equal(decode.decode_png(png(rgb), name="i", kind="image"), rgb)


def test_ordered_thread_map_keeps_order_and_raises():
    from unet_jax.data.image_ops import ordered_thread_map

    assert list(ordered_thread_map(lambda x: x * x, range(50), workers=3)) == [
        x * x for x in range(50)
    ]

    def fail_at_7(x):
        if x == 7:
            raise lyft.DataError("seven")
        return x

    out = []
    with pytest.raises(lyft.DataError, match="seven"):
        for x in ordered_thread_map(fail_at_7, range(50), workers=2, depth=4):
            out.append(x)
    assert out == list(range(7))


def test_pair_frames_unit():
    paths = [
        "root/dataB/dataB/CameraRGB/02_01_000.png",
        "root/dataB/dataB/CameraSeg/02_01_000.png",
        "CameraRGB/5.PNG",
        "CameraSeg/5.PNG",
        "dataA/CameraRGB/readme.txt",
    ]
    pairs = sources.pair_frames(paths, where="w")
    assert [(p.name, p.image, p.label) for p in pairs] == [
        ("5.PNG", "CameraRGB/5.PNG", "CameraSeg/5.PNG"),
        (
            "dataB/02_01_000.png",
            "root/dataB/dataB/CameraRGB/02_01_000.png",
            "root/dataB/dataB/CameraSeg/02_01_000.png",
        ),
    ]
    with pytest.raises(lyft.DataError, match=r"(?s)w: unpaired.*expected x/CameraSeg/1.png"):
        sources.pair_frames(["x/CameraRGB/1.png"], where="w")


def test_prepared_data_declares_the_carla_classes_and_train_counts(tmp_path):
    builder = lyft.prepare("full", data_dir=str(tmp_path / "data"), manual_dir=str(DUMMY))
    # Read back from disk by a fresh builder, as train.py does.
    reopened = lyft.open_builder(
        "full", data_dir=str(tmp_path / "data"), manual_dir=str(DUMMY), prepare=False
    )
    assert builder_classes(reopened) == CARLA_CLASSES
    counts = np.zeros(256, np.int64)
    for ex in read_splits(builder)["train"]:
        counts += np.bincount(ex["label"].ravel(), minlength=256)
    stats = reopened.info.metadata["train_stats"]
    assert stats["pixel_counts"] == counts[:13].tolist()
    assert stats["ignored_pixels"] == int(counts[255])


def test_full_resolution_dataset_names():
    assert datasets.full_resolution_name("lyft_udacity/resized_256") == "lyft_udacity/full"
    assert (
        datasets.full_resolution_name("lyft_udacity/resized_256_nohood")
        == "lyft_udacity/full_nohood"
    )
    assert datasets.full_resolution_name("lyft_udacity/synthetic") == "lyft_udacity/synthetic"
