"""The pad path of the Segmenter is pixel-aligned, checked with a model whose output varies
from pixel to pixel (the tiny trained run is nearly constant, so a shift would pass there).

Oracle: numpy reflect-padding, ``model.apply`` and cropping by hand. The test first shows
that the oracle is sensitive: the same prediction shifted by one pixel disagrees with it on
many pixels.
"""

import jax
import numpy as np
import pytest

from tests.deploy.perturbed_unet import MODEL, perturbed_variables
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.run.loading import make_apply_fn


def _by_hand(variables, images, *, tta: bool):
    m = MODEL.size_multiple
    _, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (0, -h % m), (0, -w % m), (0, 0)), mode="reflect")
    logits = np.asarray(MODEL.apply(variables, padded, train=False))
    if tta:
        mirrored = np.asarray(MODEL.apply(variables, padded[:, :, ::-1], train=False))[:, :, ::-1]
        logits = np.asarray(jax.nn.softmax(logits, -1) + jax.nn.softmax(mirrored, -1))
    return logits[:, :h, :w]


@pytest.mark.parametrize("tta", [False, True])
def test_pad_path_is_pixel_aligned(tta):
    variables = perturbed_variables()
    images = np.random.default_rng(1).integers(0, 256, (2, 34, 45, 3), dtype=np.uint8)
    scores = _by_hand(variables, images, tta=tta)
    want = scores.argmax(-1)
    top2 = np.sort(scores, axis=-1)[..., -2:]
    clear = (top2[..., 1] - top2[..., 0]) > 1e-4  # leave out near-ties
    # The oracle is sensitive: the output varies from pixel to pixel, so a one-pixel shift
    # would disagree on many pixels.
    assert len(np.unique(want)) >= 2
    shifted = np.roll(want, 1, axis=2)
    assert (shifted != want)[clear].mean() > 0.2

    segmenter = Segmenter(
        make_apply_fn(MODEL), variables, size_multiple=MODEL.size_multiple, tta_flip=tta
    )
    labels, probs = segmenter.predict(images, with_probabilities=True)
    assert labels.shape == (2, 34, 45) and clear.mean() > 0.95
    np.testing.assert_array_equal(labels[clear], want[clear])
