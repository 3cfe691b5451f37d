"""Multi-class per-class sigmoid end to end: trains, validates and predicts with sigmoids.

(The binary 1-channel sigmoid head is covered end to end in tests/test_own_data.py.)
"""

import numpy as np
import pytest

from tests.fake_data import make_examples
from unet_jax.configs import tiny
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.run.loading import load_run
from unet_jax.run.metric_writers import read_metrics
from unet_jax.train import loop as train_lib


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory):
    config = tiny.get_config()
    config.model.output_activation = "sigmoid"
    config.loss = "ce"  # per-class binary cross-entropy: a closed form to check against
    config.schedule = "constant"
    config.warmup_steps = 0
    config.learning_rate = 1e-2
    config.augment.enabled = False
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 10
    config.log_every_steps = 1
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    sources = {"train": make_examples(40, seed=5), "validation": make_examples(8, seed=6)}
    workdir = tmp_path_factory.mktemp("sigmoid")
    result = train_lib.train_and_evaluate(config, workdir, sources=sources)
    return workdir, result, sources


def test_sigmoid_training_lowers_the_loss(sigmoid_run):
    workdir, result, _ = sigmoid_run
    assert result["step"] == 10
    losses = [r["loss"] for r in read_metrics(workdir) if r["split"] == "train"]
    assert len(losses) == 10 and np.all(np.isfinite(losses))
    # Per-class BCE of 13 sigmoids starts near log(2) and falls as the model learns.
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])


def test_sigmoid_validation_loss_and_prediction_use_per_class_sigmoids(sigmoid_run):
    workdir, result, sources = sigmoid_run
    run = load_run(workdir, checkpoint="latest")
    assert run.step == 10 and run.activation == "sigmoid"
    assert run.model.num_classes == 13  # one channel per class: 13 independent sigmoids
    images = np.stack([x["image"] for x in sources["validation"]])
    labels = np.stack([x["label"][..., 0] for x in sources["validation"]]).astype(np.int64)
    logits = np.asarray(run.model.apply(run.variables, images, train=False), np.float64)

    # Validation loss: the mean over images of the mean over pixels and classes of
    # -[t log p + (1 - t) log(1 - p)], p = sigmoid(logit), t one-hot.
    p = _np_sigmoid(logits)
    t = np.eye(13)[labels]
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    want = bce.mean(axis=(1, 2, 3)).mean()
    assert result["validation"]["loss"] == pytest.approx(want, rel=1e-4)
    # ... which a softmax would not give.
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    softmax_ce = -np.take_along_axis(log_softmax, labels[..., None], -1).mean()
    assert abs(softmax_ce - want) > 1e-2

    # Prediction: per-class sigmoid probabilities (they need not sum to 1), argmax labels.
    segmenter = Segmenter.from_run(run, batch_size=4)
    predicted, probabilities = segmenter.predict(images, with_probabilities=True)
    np.testing.assert_allclose(probabilities, p, rtol=1e-4, atol=1e-5)
    assert np.abs(probabilities.sum(-1) - 1).max() > 0.1
    np.testing.assert_array_equal(predicted, logits.argmax(-1))
