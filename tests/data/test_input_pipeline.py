"""Tests of unet_jax.data.pipeline: determinism, workers, resume, sharding, eval padding."""

import io

import numpy as np
import pytest

from unet_jax.data import pipeline as ip
from unet_jax.data.augment import Resize
from unet_jax.data.classes import IGNORE_LABEL

LABEL_IDS = np.array([0, 2, 7, 12], np.uint8)


class ListSource:
    """In-memory random-access source of data-contract examples.

    Example i has a random image whose first two pixels of channel 0 encode i
    (so un-augmented batches reveal which examples they hold) and a random
    label over LABEL_IDS. Defined at module level so grain workers can unpickle it.
    """

    def __init__(self, num_examples: int, height: int = 24, width: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self._examples = []
        for i in range(num_examples):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image[0, 0, 0], image[0, 1, 0] = i % 256, i // 256
            label = rng.choice(LABEL_IDS, size=(height, width, 1))
            self._examples.append({"image": image, "label": label, "name": f"ex/{i:04d}.png"})

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict:
        return self._examples[index]

    def __repr__(self) -> str:
        return f"ListSource({len(self._examples)})"


def _ids(images: np.ndarray) -> np.ndarray:
    """Example ids encoded in un-augmented images [..., H, W, 3] -> [...]."""
    return images[..., 0, 0, 0].astype(int) + 256 * images[..., 0, 1, 0].astype(int)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"batch {i} key {k}")


def _train(source, **kwargs):
    args = dict(global_batch_size=8, image_size=(24, 32), seed=3, worker_count=0)
    args.update(kwargs)
    return ip.create_train_loader(source, **args)


# ----------------------------------------------------------------------------- Train


def test_train_batches_shapes_and_dtypes_for_both_layouts():
    source = ListSource(20)
    mesh = next(iter(_train(source, global_batch_size=8, num_local_devices=4, layout="mesh")))
    assert mesh["image"].shape == (8, 24, 32, 3) and mesh["image"].dtype == np.uint8
    assert mesh["label"].shape == (8, 24, 32) and mesh["label"].dtype == np.uint8
    assert set(mesh) == {"image", "label"}
    pmap = next(iter(_train(source, global_batch_size=8, num_local_devices=4, layout="pmap")))
    assert pmap["image"].shape == (4, 2, 24, 32, 3)
    assert pmap["label"].shape == (4, 2, 24, 32)
    # Same stream, only reshaped.
    np.testing.assert_array_equal(pmap["image"].reshape(mesh["image"].shape), mesh["image"])


def test_train_resizes_to_image_size():
    batch = next(iter(_train(ListSource(10, 30, 40), image_size=(16, 20), global_batch_size=2)))
    assert batch["image"].shape == (2, 16, 20, 3) and batch["label"].shape == (2, 16, 20)


def test_train_is_deterministic_for_a_seed():
    source = ListSource(20)
    a = _take(iter(_train(source)), 6)
    b = _take(iter(_train(source)), 6)
    _assert_batches_equal(a, b)
    c = next(iter(_train(source, seed=4)))
    assert not np.array_equal(c["image"], a[0]["image"])


def test_train_labels_stay_in_source_ids_plus_ignore():
    batches = _take(iter(_train(ListSource(20), augment={"min_scale": 0.5})), 5)
    values = set(np.unique(np.stack([b["label"] for b in batches])).tolist())
    assert values <= {*LABEL_IDS.tolist(), IGNORE_LABEL}
    assert set(LABEL_IDS.tolist()) <= values and IGNORE_LABEL in values


def test_epochs_are_reshuffled_permutations():
    source = ListSource(24)
    it = iter(_train(source, augment=False))
    epochs = [np.concatenate([_ids(b["image"]) for b in _take(it, 3)]) for _ in range(3)]
    for ids in epochs:
        assert sorted(ids.tolist()) == list(range(24))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(24))


@pytest.mark.parametrize("num_examples", [40, 43])
def test_hosts_split_each_global_batch_of_the_single_process_stream(num_examples):
    # Oracle: one process with the same global batch. Host p's batch t must be slice p of
    # global batch t, so 2 hosts train on exactly the batches 1 host would.
    source = ListSource(num_examples)
    single = _take(iter(_train(source, global_batch_size=8, augment=True)), 12)
    hosts = [
        _take(
            iter(
                _train(source, global_batch_size=8, process_index=p, process_count=2, augment=True)
            ),
            12,
        )
        for p in range(2)
    ]
    for t in range(12):
        for key in ("image", "label"):
            np.testing.assert_array_equal(
                np.concatenate([hosts[0][t][key], hosts[1][t][key]]), single[t][key]
            )
    # Within the first epoch's full global batches no example is seen twice across hosts.
    plain = [
        _take(
            iter(
                _train(source, global_batch_size=8, process_index=p, process_count=2, augment=False)
            ),
            5,
        )
        for p in range(2)
    ]
    first_epoch = np.concatenate([_ids(b["image"]) for host in plain for b in host])
    assert len(set(first_epoch.tolist())) == 40 and set(first_epoch.tolist()) <= set(
        range(num_examples)
    )


def _take_closed(loader, n):
    """The first n batches of a loader, closing its iterator (stops worker processes)."""
    iterator = iter(loader)
    try:
        return _take(iterator, n)
    finally:
        iterator.close()


@pytest.mark.parametrize("worker_count", [0, 1, 2])
def test_loader_started_at_step_k_yields_batch_k(worker_count):
    # Resuming needs only the step: a loader started at k yields batches k, k+1, ... of a
    # loader started at 0, for any worker count. 30 examples, batch 4: batch 7 straddles the
    # first epoch boundary and batches 8-9 are in the second epoch.
    source = ListSource(30)
    reference = _take_closed(_train(source, global_batch_size=4), 10)
    # Where a start lands does not depend on the worker count, only the transport does: the
    # worker runs (each start pays for the workers' start-up) take the epoch-straddling start.
    for start in (3, 7) if worker_count == 0 else (7,):
        resumed = _take_closed(
            _train(source, global_batch_size=4, worker_count=worker_count, start_step=start), 3
        )
        _assert_batches_equal(resumed, reference[start : start + 3])


def test_hosts_started_at_step_k_split_global_batch_k():
    # Another process count resumes on the same global batches.
    source = ListSource(30)
    single = _take_closed(_train(source, global_batch_size=8), 6)
    hosts = [
        _take_closed(
            _train(source, global_batch_size=8, process_index=p, process_count=2, start_step=4), 2
        )
        for p in range(2)
    ]
    for t in range(2):
        for key in ("image", "label"):
            np.testing.assert_array_equal(
                np.concatenate([hosts[0][t][key], hosts[1][t][key]]), single[4 + t][key]
            )


def test_worker_counts_give_identical_batches():
    source = ListSource(30)
    reference = _take_closed(_train(source, global_batch_size=4, augment=True), 8)
    for workers in (1, 2):
        _assert_batches_equal(
            _take_closed(_train(source, global_batch_size=4, worker_count=workers), 8), reference
        )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(global_batch_size=6, process_count=2, num_local_devices=2), r"6.*2 \* 2"),
        (dict(global_batch_size=4, num_local_devices=3), r"4.*1 \* 3"),
        (dict(global_batch_size=0), "global_batch_size=0"),
        (dict(layout="dp"), "layout"),
        (dict(process_index=2, process_count=2), "process_index=2"),
        (dict(seed=-1), "seed"),
        (dict(image_size=(0, 4)), "image_size"),
        (dict(start_step=-1), "start_step"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _train(ListSource(8), **kwargs)
    if not {"seed", "start_step"} & kwargs.keys():
        eval_kwargs = dict(global_batch_size=8, image_size=(24, 32))
        eval_kwargs.update(kwargs)
        with pytest.raises(ValueError, match=pattern):
            ip.create_eval_batches(ListSource(8), **eval_kwargs)


def test_bad_example_error_names_the_file():
    source = ListSource(4)
    source._examples[2]["label"] = source._examples[2]["label"].astype(np.int32)
    with pytest.raises(ValueError, match=r"ex/0002\.png"):
        list(ip.create_eval_batches(source, global_batch_size=4, image_size=(24, 32)))


# ----------------------------------------------------------------------------- Eval


@pytest.mark.parametrize(
    ("num_examples", "global_batch", "processes", "devices", "layout"),
    [
        (10, 4, 1, 1, "mesh"),
        (12, 4, 1, 2, "pmap"),
        (13, 8, 2, 2, "pmap"),
        (7, 12, 3, 1, "mesh"),  # host 2 gets only padding
        (2, 8, 4, 2, "mesh"),  # fewer examples than hosts * devices
        (25, 6, 2, 3, "pmap"),
    ],
)
def test_eval_covers_each_example_once_with_mask(
    num_examples, global_batch, processes, devices, layout
):
    source = ListSource(num_examples)
    expected_batches = -(-num_examples // global_batch)
    assert ip.num_eval_batches(num_examples=num_examples, global_batch_size=global_batch) == (
        expected_batches
    )
    local = global_batch // processes
    lead = (devices, local // devices) if layout == "pmap" else (local,)
    counts = np.zeros(num_examples, int)
    padding = 0
    for p in range(processes):
        batches = list(
            ip.create_eval_batches(
                source,
                global_batch_size=global_batch,
                image_size=(24, 32),
                process_index=p,
                process_count=processes,
                num_local_devices=devices,
                layout=layout,
            )
        )
        assert len(batches) == expected_batches
        for b in batches:
            assert b["image"].shape == (*lead, 24, 32, 3) and b["image"].dtype == np.uint8
            assert b["label"].shape == (*lead, 24, 32) and b["mask"].shape == lead
            assert b["mask"].dtype == np.bool_
            ids = _ids(b["image"])[b["mask"]]
            np.add.at(counts, ids, 1)
            for i in ids:
                j = np.flatnonzero((_ids(b["image"]) == i) & b["mask"])[0]
                example = source[int(i)]
                np.testing.assert_array_equal(
                    b["image"].reshape(-1, 24, 32, 3)[j], example["image"]
                )
                np.testing.assert_array_equal(
                    b["label"].reshape(-1, 24, 32)[j], example["label"][..., 0]
                )
            padding += int((~b["mask"]).sum())
            assert (b["label"][~b["mask"]] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(counts, np.ones(num_examples, int))
    assert padding == expected_batches * global_batch - num_examples


def test_eval_is_fresh_each_call_and_resizes():
    source = ListSource(5, 30, 40)
    a = list(ip.create_eval_batches(source, global_batch_size=2, image_size=(15, 20)))
    b = list(ip.create_eval_batches(source, global_batch_size=2, image_size=(15, 20)))
    assert len(a) == 3
    _assert_batches_equal(a, b)
    resize = Resize(15, 20)
    for i in range(5):
        expected = resize.map(source[i])
        np.testing.assert_array_equal(a[i // 2]["image"][i % 2], expected["image"])
        np.testing.assert_array_equal(a[i // 2]["label"][i % 2], expected["label"][..., 0])


def test_eval_of_empty_source_yields_nothing():
    assert list(ip.create_eval_batches(ListSource(0), global_batch_size=2, image_size=(4, 4))) == []


# ----------------------------------------------------------------------------- TFDS


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tfds_source(tmp_path_factory):
    """A real TFDS array_record source (PNG-encoded) built from a toy builder."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class ToySegmentation(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.Image(shape=(None, None, 1)),
                        "name": tfds.features.Text(),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"validation": self._generate_examples(11)}

        def _generate_examples(self, n):
            source = ListSource(n, 30, 40, seed=5)
            for i in range(n):
                ex = source[i]
                yield (
                    i,
                    {
                        "image": _png(ex["image"]),
                        "label": _png(ex["label"][..., 0]),
                        "name": ex["name"],
                    },
                )

    builder = ToySegmentation(
        data_dir=str(tmp_path_factory.mktemp("tfds")), file_format="array_record"
    )
    builder.download_and_prepare()
    return builder.as_data_source()["validation"]


def test_tfds_array_record_source_train_and_eval(tfds_source):
    assert len(tfds_source) == 11
    batch = next(iter(_train(tfds_source, image_size=(24, 32), global_batch_size=4)))
    assert batch["image"].shape == (4, 24, 32, 3)
    assert set(np.unique(batch["label"]).tolist()) <= {*LABEL_IDS.tolist(), IGNORE_LABEL}

    kwargs = dict(global_batch_size=4, image_size=(15, 20), num_local_devices=2, layout="pmap")
    in_process = list(ip.create_eval_batches(tfds_source, **kwargs))
    with_workers = list(ip.create_eval_batches(tfds_source, worker_count=2, **kwargs))
    _assert_batches_equal(in_process, with_workers)
    # Oracle: the PNG-decoded source examples, resized one by one, in order.
    images = np.concatenate([b["image"].reshape(-1, 15, 20, 3) for b in in_process])
    mask = np.concatenate([b["mask"].reshape(-1) for b in in_process])
    assert mask.tolist() == [True] * 11 + [False]
    resize = Resize(15, 20)
    for i in range(11):
        np.testing.assert_array_equal(images[i], resize.map(tfds_source[i])["image"])
