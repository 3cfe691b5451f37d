"""Small splits are decoded once into memory; batches are the same as from the disk source."""

from __future__ import annotations

import numpy as np
import pytest

from unet_jax.data import pipeline as ip
from unet_jax.data import sources as data_sources


class CountingSource:
    """A source that builds each example on access (as TFDS decodes) and counts reads."""

    def __init__(self, n: int, height: int, width: int):
        self.shape = (height, width)
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        rng = np.random.default_rng(index)
        h, w = self.shape
        return {
            "image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            "label": rng.integers(0, 4, (h, w, 1), dtype=np.uint8),
            "name": f"x{index}",
        }


def test_fits_budget_is_decoded_once_and_read_only():
    source = CountingSource(6, 40, 56)
    cached = data_sources.in_memory(source, budget_mb=1)
    assert isinstance(cached, data_sources.InMemorySource)
    assert source.reads == 6 and len(cached) == 6
    for i in range(6):
        want = source[i]
        got = cached[i]
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])
        assert got["name"] == want["name"]
    with pytest.raises(ValueError, match="read-only"):
        cached[0]["image"][0, 0, 0] = 1


def test_over_budget_or_disabled_keeps_the_source_unread():
    source = CountingSource(100, 64, 64)  # 100 * 64 * 64 * 4 bytes = 1.6 MiB
    assert data_sources.in_memory(source, budget_mb=1) is source
    assert data_sources.in_memory(source, budget_mb=0) is source
    assert source.reads == 1  # only the first example, for the size estimate


@pytest.mark.parametrize("input_mode", ["crop", "resize"])
def test_batches_equal_the_disk_source(input_mode):
    source = CountingSource(5, 48, 64)
    cached = data_sources.in_memory(source, budget_mb=8)
    args = dict(
        global_batch_size=4,
        image_size=(32, 32),
        seed=3,
        augment={"enabled": True, "rot90": True, "input_mode": input_mode},
    )
    disk = iter(ip.create_train_loader(source, **args))
    memory = iter(ip.create_train_loader(cached, **args))
    for _ in range(4):  # crosses an epoch boundary
        a, b = next(disk), next(memory)
        for key in ("image", "label"):
            np.testing.assert_array_equal(a[key], b[key])
