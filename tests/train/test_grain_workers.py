"""A crop-mode train.py run with grain worker processes leaves no shared memory behind.

Oracle: Python's resource tracker, which warns at exit about every shared_memory block
created and never unlinked (the batches the workers had prepared ahead).
"""

import numpy as np
import pytest
from PIL import Image

from tests.worker_utils import run_script


def _binary_folder(root) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        mask = np.zeros((40, 48), np.uint8)
        y, x = rng.integers(0, 24, 2)
        mask[y : y + 12, x : x + 16] = 255
        image = np.stack([mask, 255 - mask, mask // 2], -1)
        Image.fromarray(image).save(root / "images" / f"t{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"t{i}.png")


@pytest.mark.slow
def test_crop_mode_run_with_workers_leaks_no_shared_memory(tmp_path):
    _binary_folder(tmp_path / "data")
    result = run_script(
        "train.py",
        "--config=unet_jax/configs/folder.py",  # input_mode="crop"
        f"--config.folder={tmp_path / 'data'}",
        f"--config.data_dir={tmp_path / 'tfds'}",
        "--config.image_size=(32,32)",
        "--config.model.features=(4,8)",
        "--config.model.bridge_features=16",
        "--config.batch_size=4",
        "--config.eval_batch_size=4",
        "--config.worker_count=1",
        "--config.num_train_steps=4",
        "--config.eval_every_steps=4",
        "--config.progress_bar=False",
        f"--workdir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "leaked shared_memory" not in result.stderr, result.stderr[-3000:]
    assert "Exception ignored" not in result.stderr, result.stderr[-3000:]  # no double unlink
    assert "Done: step 4" in result.stdout
