"""Tests for unet_jax.train.losses against independent oracles (optax, numpy loops, algebra)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from unet_jax.train import losses

C = 4
IGN = 255


def _random_case(seed, shape=(2, 5, 6), num_classes=C, ignore_frac=0.2):
    """Random logits and labels, some pixels ignored (255) or out of range (>= C)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape + (num_classes,)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    drop = rng.random(shape) < ignore_frac
    labels[drop] = rng.choice([IGN, num_classes, num_classes + 3], size=int(drop.sum()))
    return logits, labels


# ---------------------------------------------------------------- numpy oracles (loops)


def _np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _np_sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _np_dice(logits, labels, num_classes, activation="softmax", weights=None, smooth=1.0):
    """Straightforward per-image, per-class loops in float64."""
    logits = np.asarray(logits, np.float64)
    b_, h_, w_ = labels.shape
    out = np.zeros(b_)
    for b in range(b_):
        dices = []
        for c in range(num_classes):
            inter = psum = tsum = 0.0
            for i in range(h_):
                for j in range(w_):
                    lab = int(labels[b, i, j])
                    if lab == IGN or lab >= num_classes:
                        continue
                    v = logits[b, i, j]
                    p = _np_softmax(v)[c] if activation == "softmax" else _np_sigmoid(v[c])
                    t = 1.0 if lab == c else 0.0
                    inter += p * t
                    psum += p
                    tsum += t
            dices.append((2 * inter + smooth) / (psum + tsum + smooth))
        w = np.ones(num_classes) if weights is None else np.asarray(weights, np.float64)
        out[b] = 1.0 - np.dot(w, dices) / w.sum()
    return out


def _np_ce(logits, labels, num_classes, activation="softmax", weights=None):
    logits = np.asarray(logits, np.float64)
    w = np.ones(num_classes) if weights is None else np.asarray(weights, np.float64)
    b_, h_, w_ = labels.shape
    out = np.zeros(b_)
    for b in range(b_):
        num = den = 0.0
        for i in range(h_):
            for j in range(w_):
                lab = int(labels[b, i, j])
                if lab == IGN or lab >= num_classes:
                    continue
                v = logits[b, i, j]
                if activation == "softmax":
                    lse = np.log(np.sum(np.exp(v - v.max()))) + v.max()
                    num += w[lab] * (lse - v[lab])
                    den += w[lab]
                else:
                    bce = 0.0
                    for c in range(num_classes):
                        p = _np_sigmoid(v[c])
                        t = 1.0 if lab == c else 0.0
                        bce += w[c] * -(t * np.log(p) + (1 - t) * np.log(1 - p))
                    num += bce / w.sum()
                    den += 1.0
        out[b] = num / den if den > 0 else 0.0
    return out


def _np_softmax_focal(logits, labels, num_classes, gamma, weights=None):
    """Multi-class focal by loops in float64: weighted mean of -(1-p_t)^g log p_t."""
    logits = np.asarray(logits, np.float64)
    w = np.ones(num_classes) if weights is None else np.asarray(weights, np.float64)
    b_, h_, w_ = labels.shape
    out = np.zeros(b_)
    for b in range(b_):
        num = den = 0.0
        for i in range(h_):
            for j in range(w_):
                lab = int(labels[b, i, j])
                if lab == IGN or lab >= num_classes:
                    continue
                pt = _np_softmax(logits[b, i, j])[lab]
                num += w[lab] * -((1.0 - pt) ** gamma) * np.log(pt)
                den += w[lab]
        out[b] = num / den if den > 0 else 0.0
    return out


# ---------------------------------------------------------------- Dice


def test_dice_matches_optax_dice_loss():
    # optax 0.2.8: 1 - (I + s) / (I + 0.5 (P - I) + 0.5 (T - I) + s) = 1 - (2I + 2s)/(P+T+2s),
    # class weights multiply the per-class losses, then a plain mean over classes.
    # So it equals ours with smooth_ours = 2 * smooth_optax and weights summing to C.
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(3, 7, 5, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(3, 7, 5))
    targets = jax.nn.one_hot(labels, C)
    for smooth in (1.0, 0.25):
        want = optax.losses.dice_loss(logits, targets, smooth=smooth / 2)
        got = losses.soft_dice_loss(logits, labels, num_classes=C, smooth=smooth)
        assert got.shape == (3,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    w = rng.random(C) + 0.1
    w = w * C / w.sum()
    want = optax.losses.dice_loss(logits, targets, smooth=0.5, class_weights=jnp.asarray(w))
    got = losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_dice_matches_numpy_loop_reference(activation):
    logits, labels = _random_case(1, shape=(2, 3, 4))
    for weights, smooth in ((None, 1.0), ([0.5, 2.0, 1.0, 0.1], 0.3)):
        got = losses.soft_dice_loss(
            logits,
            labels,
            num_classes=C,
            activation=activation,
            class_weights=None if weights is None else jnp.asarray(weights),
            smooth=smooth,
        )
        want = _np_dice(logits, labels, C, activation, weights, smooth)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_perfect_prediction_gives_zero_and_absent_classes_count_as_perfect(activation):
    rng = np.random.default_rng(2)
    # Image 0 holds classes 0 and 2 only: classes 1 and 3 are absent from target and
    # (near enough) from the prediction, so they must count as dice 1, not 0.
    labels = rng.choice([0, 2], size=(2, 6, 6))
    labels[1] = rng.integers(0, C, size=(6, 6))
    onehot = jax.nn.one_hot(labels, C)
    logits = 60.0 * (2.0 * onehot - 1.0)  # saturates both softmax and sigmoid
    loss = losses.soft_dice_loss(logits, labels, num_classes=C, activation=activation)
    np.testing.assert_allclose(loss, 0.0, atol=1e-5)
    # The opposite prediction for every pixel is far from zero.
    wrong = losses.soft_dice_loss(-logits, labels, num_classes=C, activation=activation)
    assert np.all(np.asarray(wrong) > 0.4)


def test_smooth_zero_empty_class_is_one_not_nan():
    # Hand example, C=2, smooth=0: a class with I = P = T = 0 must be dice 1, not 0/0.
    labels = np.array([[IGN, IGN]])
    logits = np.zeros((1, 2, 2), np.float32)
    loss = losses.soft_dice_loss(logits, labels, num_classes=2, smooth=0.0)
    # No valid pixel: every class has I = P = T = 0 -> dice 1 -> loss 0.
    np.testing.assert_array_equal(loss, [0.0])
    # One valid pixel of class 0 with p = (0.5, 0.5): dice_0 = 1 / 1.5, dice_1 = 0 / 0.5.
    labels = np.array([[0, IGN]])
    loss = losses.soft_dice_loss(logits, labels, num_classes=2, smooth=0.0)
    np.testing.assert_allclose(loss, [1.0 - (2 / 3 + 0.0) / 2], rtol=1e-6)


def test_class_weights_are_a_normalised_weighted_mean_of_per_class_dice():
    logits, labels = _random_case(3)
    # One-hot weights pick the per-class loss 1 - dice_c.
    per_class = np.stack(
        [
            losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=np.eye(C)[c])
            for c in range(C)
        ],
        axis=-1,
    )
    dice = 1.0 - per_class  # [B, C]
    w = np.array([3.0, 0.5, 0.0, 1.5])
    got = losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=w)
    np.testing.assert_allclose(got, 1.0 - dice @ w / w.sum(), rtol=1e-5)
    scaled = losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=10 * w)
    np.testing.assert_allclose(scaled, got, rtol=1e-6)
    uniform = losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=np.ones(C))
    plain = losses.soft_dice_loss(logits, labels, num_classes=C)
    np.testing.assert_allclose(uniform, plain, rtol=1e-6)
    np.testing.assert_allclose(plain, 1.0 - dice.mean(axis=-1), rtol=1e-5)


# ---------------------------------------------------------------- ignored pixels

ALL_LOSSES = [
    functools.partial(losses.soft_dice_loss, activation="softmax"),
    functools.partial(losses.soft_dice_loss, activation="sigmoid"),
    functools.partial(losses.cross_entropy_loss, activation="softmax"),
    functools.partial(losses.cross_entropy_loss, activation="sigmoid"),
    functools.partial(losses.dice_ce_loss, ce_weight=0.7, class_weights=np.arange(1.0, C + 1)),
    functools.partial(losses.focal_loss, activation="softmax", gamma=0.5),
    functools.partial(losses.focal_loss, activation="sigmoid", gamma=2.0),
    functools.partial(
        losses.dice_focal_loss, focal_weight=0.7, gamma=1.5, class_weights=np.arange(1.0, C + 1)
    ),
]


@pytest.mark.parametrize("loss_fn", ALL_LOSSES)
def test_logits_at_ignored_pixels_change_neither_loss_nor_gradient(loss_fn):
    logits, labels = _random_case(4, ignore_frac=0.3)
    invalid = (labels == IGN) | (labels >= C)
    assert invalid.any() and not invalid.all()
    other = logits.copy()
    rng = np.random.default_rng(5)
    other[invalid] = rng.normal(scale=50.0, size=other[invalid].shape)
    other[tuple(np.argwhere(invalid)[0])] = np.nan  # even NaN logits there must not leak

    def total(x):
        return jnp.sum(loss_fn(x, labels, num_classes=C))

    v1, g1 = jax.value_and_grad(total)(jnp.asarray(logits))
    v2, g2 = jax.value_and_grad(total)(jnp.asarray(other))
    np.testing.assert_allclose(v2, v1, rtol=1e-6)
    np.testing.assert_allclose(g2, g1, rtol=1e-6, atol=1e-8)
    assert np.all(np.asarray(g1)[invalid] == 0.0)
    assert np.any(np.asarray(g1)[~invalid] != 0.0)


@pytest.mark.parametrize("loss_fn", ALL_LOSSES)
def test_cropped_image_equals_padded_image_with_ignored_padding(loss_fn):
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(2, 5, 7, C)).astype(np.float32)
    labels = rng.integers(0, C, size=(2, 5, 7)).astype(np.uint8)
    pad_logits = rng.normal(scale=5.0, size=(2, 8, 9, C)).astype(np.float32)
    pad_labels = np.full((2, 8, 9, 1), IGN, np.uint8)  # data-contract [.., 1] labels
    pad_logits[:, 1:6, 2:9] = logits
    pad_labels[:, 1:6, 2:9, 0] = labels
    cropped = loss_fn(logits, labels, num_classes=C)
    padded = loss_fn(pad_logits, pad_labels, num_classes=C)
    np.testing.assert_allclose(padded, cropped, rtol=1e-5)


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_cross_entropy_matches_numpy_loop_reference(activation):
    logits, labels = _random_case(7, shape=(3, 4, 3))
    labels[2] = IGN  # an image without any valid pixel -> 0
    for weights in (None, [0.2, 1.0, 3.0, 0.5]):
        got = losses.cross_entropy_loss(
            logits, labels, num_classes=C, activation=activation, class_weights=weights
        )
        want = _np_ce(logits, labels, C, activation, weights)
        assert want[2] == 0.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dice_ce_is_the_weighted_sum():
    logits, labels = _random_case(8)
    for activation in ("softmax", "sigmoid"):
        kw = dict(num_classes=C, activation=activation)
        got = losses.dice_ce_loss(logits, labels, ce_weight=0.3, smooth=0.5, **kw)
        want = _np_dice(logits, labels, C, activation, smooth=0.5) + 0.3 * _np_ce(
            logits, labels, C, activation
        )
        np.testing.assert_allclose(got, want, rtol=1e-5)


# ---------------------------------------------------------------- focal


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_sigmoid_focal_matches_optax_sigmoid_focal_loss(gamma):
    # optax gives the elementwise binary focal loss (alpha=None); ours averages it over
    # classes (weighted by w / sum w) and then over the valid pixels of each image.
    logits, labels = _random_case(20, shape=(3, 5, 4), ignore_frac=0.3)
    labels[2] = IGN  # no valid pixel -> 0
    valid = (labels != IGN) & (labels < C)
    targets = jax.nn.one_hot(np.where(valid, labels, 0), C)
    elementwise = np.asarray(optax.losses.sigmoid_focal_loss(logits, targets, gamma=gamma))
    for weights in (None, np.array([0.2, 1.0, 3.0, 0.5])):
        w = np.ones(C) if weights is None else weights
        per_pixel = elementwise @ w / w.sum()
        want = [per_pixel[b][valid[b]].mean() if valid[b].any() else 0.0 for b in range(3)]
        got = losses.focal_loss(
            logits, labels, num_classes=C, activation="sigmoid", gamma=gamma, class_weights=weights
        )
        assert got.shape == (3,)
        assert want[2] == 0.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
def test_softmax_focal_matches_numpy_loop_reference(gamma):
    logits, labels = _random_case(21, shape=(3, 4, 3))
    labels[2] = IGN
    for weights in (None, [0.2, 1.0, 3.0, 0.5]):
        got = losses.focal_loss(logits, labels, num_classes=C, gamma=gamma, class_weights=weights)
        want = _np_softmax_focal(logits, labels, C, gamma, weights)
        assert want[2] == 0.0
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_focal_with_gamma_zero_is_the_cross_entropy(activation):
    logits, labels = _random_case(22)
    for weights in (None, np.array([0.2, 1.0, 3.0, 0.5])):
        kw = dict(num_classes=C, activation=activation, class_weights=weights)
        ce = losses.cross_entropy_loss(logits, labels, **kw)
        np.testing.assert_allclose(
            losses.focal_loss(logits, labels, gamma=0.0, **kw), ce, rtol=1e-6
        )
        # gamma > 0 down-weights every pixel ((1 - p_t)^gamma < 1): strictly smaller.
        focal = losses.focal_loss(logits, labels, gamma=2.0, **kw)
        assert np.all(np.asarray(focal) < np.asarray(ce) - 1e-2)


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_focal_is_finite_with_saturated_logits_and_small_gamma(activation):
    # (1 - p_t)^gamma has an infinite slope at p_t = 1 for gamma < 1; the log-space form
    # must keep loss and gradient finite when the prediction is (numerically) perfect.
    rng = np.random.default_rng(23)
    labels = rng.integers(0, C, size=(2, 4, 4))
    logits = 200.0 * (2.0 * jax.nn.one_hot(labels, C) - 1.0)
    for gamma in (0.0, 0.3, 2.0):
        fn = functools.partial(losses.focal_loss, num_classes=C, activation=activation, gamma=gamma)
        total = jax.value_and_grad(lambda x, fn=fn: jnp.sum(fn(x, labels)))
        value, grad = total(logits)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
        np.testing.assert_allclose(value, 0.0, atol=1e-6)
        wrong, wrong_grad = total(-logits)
        assert float(wrong) > 100.0 and np.all(np.isfinite(np.asarray(wrong_grad)))


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_focal_is_per_example(activation):
    logits, labels = _random_case(24, shape=(3, 5, 6))
    fn = functools.partial(losses.focal_loss, num_classes=C, activation=activation, gamma=2.0)
    batch = np.asarray(fn(logits, labels))
    assert batch.shape == (3,)
    singles = [float(fn(logits[b : b + 1], labels[b : b + 1])[0]) for b in range(3)]
    np.testing.assert_allclose(batch, singles, rtol=1e-6)
    assert np.ptp(batch) > 1e-3  # the images really differ
    # Cropping the ignored pixels of one image away changes only that image's value:
    # every image is normalised by its own count of valid pixels.
    other = labels.copy()
    other[0, :, 3:] = IGN
    changed = np.asarray(fn(logits, other))
    np.testing.assert_allclose(changed[1:], batch[1:], rtol=1e-6)
    np.testing.assert_allclose(changed[0], fn(logits[:1, :, :3], labels[:1, :, :3])[0], rtol=1e-5)


def test_dice_focal_is_the_weighted_sum():
    logits, labels = _random_case(25)
    w = [0.5, 2.0, 1.0, 0.1]
    got = losses.dice_focal_loss(
        logits, labels, num_classes=C, gamma=1.5, focal_weight=0.3, smooth=0.5, class_weights=w
    )
    want = _np_dice(logits, labels, C, "softmax", w, smooth=0.5) + 0.3 * _np_softmax_focal(
        logits, labels, C, 1.5, w
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for activation in ("softmax", "sigmoid"):
        kw = dict(num_classes=C, activation=activation, class_weights=w)
        got = losses.dice_focal_loss(logits, labels, gamma=2.5, focal_weight=4.0, **kw)
        want = losses.soft_dice_loss(logits, labels, **kw) + 4.0 * losses.focal_loss(
            logits, labels, gamma=2.5, **kw
        )
        np.testing.assert_allclose(got, want, rtol=1e-6)


# ---------------------------------------------------------------- precision, jit


def test_bfloat16_logits_give_float32_close_to_float32_run():
    logits, labels = _random_case(9, shape=(2, 16, 16))
    for name in ("dice", "ce", "dice_ce", "focal", "dice_focal"):
        fn = losses.get_loss_fn(name, num_classes=C)
        bf = jnp.asarray(logits, jnp.bfloat16)
        got = fn(bf, labels)
        assert got.dtype == jnp.float32
        # Cast first: identical to the float32 computation on the rounded logits.
        np.testing.assert_allclose(got, fn(bf.astype(jnp.float32), labels), rtol=1e-6)
        np.testing.assert_allclose(got, fn(logits, labels), rtol=2e-2, atol=2e-3)


def test_jit_matches_eager():
    logits, labels = _random_case(10)
    fn = losses.get_loss_fn("dice_ce", num_classes=C, ce_weight=0.5)
    np.testing.assert_allclose(jax.jit(fn)(logits, labels), fn(logits, labels), rtol=1e-6)


# ---------------------------------------------------------------- batch reduction, devices


def test_same_value_and_gradient_on_one_and_four_devices():
    n_dev = 4
    assert jax.local_device_count() >= n_dev, "conftest should provide 4 CPU devices"
    logits, labels = _random_case(11, shape=(8, 6, 6))
    loss_fn = losses.get_loss_fn("dice_ce", num_classes=C, ce_weight=0.5)

    def objective(temperature, lg, lb):
        # A shared scalar parameter so the gradient is comparable across devices.
        return jnp.mean(loss_fn(lg * temperature, lb))

    value, grad = jax.value_and_grad(objective)(1.3, logits, labels)

    def per_device(temperature, lg, lb):
        v, g = jax.value_and_grad(objective)(temperature, lg, lb)
        return jax.lax.pmean(v, "d"), jax.lax.pmean(g, "d")

    shard = lambda x: x.reshape((n_dev, -1) + x.shape[1:])
    pv, pg = jax.pmap(per_device, axis_name="d", in_axes=(None, 0, 0))(
        1.3, shard(logits), shard(labels)
    )
    np.testing.assert_allclose(pv, np.full(n_dev, value), rtol=1e-6)
    np.testing.assert_allclose(pg, np.full(n_dev, grad), rtol=1e-5)
    # The value is not trivially the same per shard: shards differ from each other.
    shard_means = [
        float(objective(1.3, a, b)) for a, b in zip(shard(logits), shard(labels), strict=True)
    ]
    assert np.ptp(shard_means) > 1e-4


# ---------------------------------------------------------------- API and errors


def test_get_loss_fn_names_and_errors():
    logits, labels = _random_case(13)
    assert np.allclose(
        losses.get_loss_fn("dice", num_classes=C, smooth=0.5)(logits, labels),
        losses.soft_dice_loss(logits, labels, num_classes=C, smooth=0.5),
    )
    assert np.allclose(
        losses.get_loss_fn("ce", num_classes=C)(logits, labels),
        losses.cross_entropy_loss(logits, labels, num_classes=C),
    )
    assert np.allclose(
        losses.get_loss_fn("dice_focal", num_classes=C, gamma=1.0, focal_weight=0.5)(
            logits, labels
        ),
        losses.dice_focal_loss(logits, labels, num_classes=C, gamma=1.0, focal_weight=0.5),
    )
    with pytest.raises(ValueError, match="'focl'"):
        losses.get_loss_fn("focl", num_classes=C)
    with pytest.raises(TypeError, match="ce_weight"):
        losses.get_loss_fn("dice_focal", num_classes=C, ce_weight=1.0)
    with pytest.raises(TypeError, match="smooth"):
        losses.get_loss_fn("ce", num_classes=C, smooth=1.0)
    with pytest.raises(TypeError, match="num_classes"):
        losses.get_loss_fn("dice")


def test_bad_inputs_raise_clear_errors():
    logits, labels = _random_case(14)
    with pytest.raises(ValueError, match="num_classes=5"):
        losses.soft_dice_loss(logits, labels, num_classes=5)
    with pytest.raises(ValueError, match="labels shape"):
        losses.soft_dice_loss(logits, labels[:, :3], num_classes=C)
    with pytest.raises(ValueError, match="'softmx'"):
        losses.cross_entropy_loss(logits, labels, num_classes=C, activation="softmx")
    with pytest.raises(ValueError, match="class_weights"):
        losses.soft_dice_loss(logits, labels, num_classes=C, class_weights=np.ones(3))
    with pytest.raises(TypeError, match="integer"):
        losses.soft_dice_loss(logits, labels.astype(np.float32), num_classes=C)
    with pytest.raises(ValueError, match="smooth"):
        losses.soft_dice_loss(logits, labels, num_classes=C, smooth=-1.0)
    for gamma in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gamma"):
            losses.focal_loss(logits, labels, num_classes=C, gamma=gamma)
