"""Segmentation losses: soft Dice, cross-entropy, focal and sums (pure JAX, jit-friendly).

Shapes and conventions
----------------------
``logits`` are ``[B, *spatial, C]`` (channels last, e.g. ``[B, H, W, C]``), any float dtype;
they are cast to float32 *before* the activation so that softmax, sums and divisions run
in float32 even when the model computes in bfloat16. ``labels`` are integer class ids
``[B, *spatial]`` or ``[B, *spatial, 1]`` (the data contract's ``uint8 [H, W, 1]`` batched).
A pixel is *valid* when ``0 <= label < num_classes`` and ``label != ignore_label``; invalid
pixels (the 255 ignore id, any id >= ``num_classes``) contribute nothing: not to the
prediction sums, not to the target sums, not to the cross-entropy average, and the
gradient w.r.t. their logits is exactly zero (their logits are replaced by zeros before the
activation, so even ``inf``/``NaN`` logits there cannot leak in).

Every loss returns a **per-example** float32 vector ``[B]``; callers reduce it. The
training step takes its mean (then ``pmean`` over devices), so the loss of a global batch
is the same on 1 or on N devices, every device holding the same number of examples; the
evaluation step sums it over the real examples of a padded batch (``mask``).

Exactly how the soft Dice loss is reduced
-----------------------------------------
For each image ``b`` and class ``c`` (sums over the valid pixels ``i`` of that image only)::

    p[b,i,c] = softmax(logits[b,i])[c]            (activation="softmax", default)
             = sigmoid(logits[b,i,c])              (activation="sigmoid")
    t[b,i,c] = 1 if labels[b,i] == c else 0
    I[b,c] = sum_i p*t      P[b,c] = sum_i p      T[b,c] = sum_i t
    dice[b,c] = (2*I[b,c] + smooth) / (P[b,c] + T[b,c] + smooth)
    loss[b] = 1 - sum_c w_c * dice[b,c] / sum_c w_c     (w_c = 1 without class_weights)

1. per image (pixels are summed within one image, never across the batch),
2. then a (weighted) mean over classes, the weights normalised by their sum,
3. then the caller's mean over the batch.

A class absent from both the target and the prediction of an image (``I = P = T = 0``) gets
``dice = smooth / smooth = 1``: the image is "perfect" for that class, contributing zero
loss. That is the usual choice (optax, MONAI); it keeps the loss of a perfect prediction at
0 although most images contain only some of the 13 classes. With the softmax ``P`` is
never exactly 0, so an absent class still pushes its probability towards 0. With
``smooth=0`` an exactly empty class would be ``0/0``; it is defined as ``dice = 1`` here.

How this compares with optax, MONAI and the Keras recipe of U-Net articles:
docs/LOSSES_AND_METRICS.md, "How other libraries reduce Dice".
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from unet_jax.data.classes import IGNORE_LABEL

_ACTIVATIONS = ("softmax", "sigmoid")


def _check_inputs(
    logits: jax.Array,
    labels: jax.Array,
    num_classes: int,
    activation: str,
    class_weights: jax.Array | None,
) -> jax.Array:
    """Validates static shapes/dtypes and returns labels as int32 ``[B, *spatial]``."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"logits must be floating point, got dtype {logits.dtype}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must hold integer class ids, got dtype {labels.dtype}")
    if logits.ndim < 2 or logits.shape[-1] != num_classes:
        raise ValueError(
            f"logits must be [B, ..., num_classes={num_classes}], got shape {logits.shape}"
        )
    # Accept the data contract's trailing channel of size 1.
    if labels.ndim == logits.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels shape {labels.shape} does not match logits shape {logits.shape}: "
            "expected labels [B, ...] or [B, ..., 1] with the spatial shape of the logits"
        )
    if class_weights is not None and jnp.shape(class_weights) != (num_classes,):
        raise ValueError(
            f"class_weights must have shape ({num_classes},), got {jnp.shape(class_weights)}"
        )
    return labels.astype(jnp.int32)


def _valid_pixels(labels: jax.Array, num_classes: int, ignore_label: int | None) -> jax.Array:
    """Boolean ``[B, *spatial]``: label in ``[0, num_classes)`` and not ``ignore_label``."""
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_label is not None:
        valid = valid & (labels != ignore_label)
    return valid


def _masked_float32_logits(logits: jax.Array, valid: jax.Array) -> jax.Array:
    # Zeroing the logits of invalid pixels (rather than only masking the probabilities)
    # makes the result independent of them, even when they are inf/NaN: a NaN would
    # otherwise survive `p * 0` and the backward pass of the softmax.
    return jnp.where(valid[..., None], logits.astype(jnp.float32), 0.0)


def _prepare(
    logits: jax.Array,
    labels: jax.Array,
    num_classes: int,
    activation: str,
    class_weights: jax.Array | None,
    ignore_label: int | None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Checked int32 labels, the valid-pixel mask and the masked float32 logits."""
    labels = _check_inputs(logits, labels, num_classes, activation, class_weights)
    valid = _valid_pixels(labels, num_classes, ignore_label)
    return labels, valid, _masked_float32_logits(logits, valid)


def _label_weight(
    class_weights: jax.Array | None, safe_labels: jax.Array, validf: jax.Array
) -> jax.Array:
    """Each valid pixel's weight ``w[label]`` (1 without class weights), 0 elsewhere."""
    if class_weights is None:
        return validf
    return jnp.asarray(class_weights, jnp.float32)[safe_labels] * validf


def _mean_over_classes(per_class: jax.Array, class_weights: jax.Array | None) -> jax.Array:
    """[..., C] -> [...]: the (class-weighted) mean over the last axis."""
    if class_weights is None:
        return jnp.mean(per_class, axis=-1)
    w = jnp.asarray(class_weights, jnp.float32)
    return jnp.sum(per_class * w, axis=-1) / jnp.sum(w)


def _mean_over_pixels(per_pixel: jax.Array, pixel_weight: jax.Array) -> jax.Array:
    """[B, *spatial] -> [B]: the weighted mean over each image's pixels (0 without any)."""
    axes = tuple(range(1, per_pixel.ndim))
    total = jnp.sum(per_pixel * pixel_weight, axis=axes)
    count = jnp.sum(pixel_weight, axis=axes)
    return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)


def soft_dice_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    activation: str = "softmax",
    class_weights: jax.Array | None = None,
    smooth: float = 1.0,
    ignore_label: int | None = IGNORE_LABEL,
) -> jax.Array:
    """Multi-class soft Dice loss, computed per image (see the module docstring).

    Args:
        logits: ``[B, *spatial, num_classes]`` float logits (bfloat16 is cast to float32).
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` integer class ids.
        num_classes: Number of classes ``C``; ids outside ``[0, C)`` are ignored.
        activation: ``"softmax"`` (classes mutually exclusive) or ``"sigmoid"``
            (independent per-class probabilities, as in the Keras article).
        class_weights: Optional ``[C]`` non-negative weights for the mean over classes
            (normalised by their sum, so their scale does not matter).
        smooth: Added to numerator and denominator of every per-class Dice. Must be >= 0.
        ignore_label: Label id whose pixels are ignored (``None``: only out-of-range ids).

    Returns:
        float32 ``[B]``: ``1 - (weighted) mean_c dice[b, c]`` for each image.
    """
    if isinstance(smooth, (int, float)) and smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    labels, valid, x = _prepare(
        logits, labels, num_classes, activation, class_weights, ignore_label
    )
    probs = jax.nn.softmax(x, axis=-1) if activation == "softmax" else jax.nn.sigmoid(x)
    validf = valid[..., None].astype(jnp.float32)
    probs = probs * validf
    # one_hot of an out-of-range id is all zeros already; the mask also covers
    # ignore_label values that lie inside [0, C).
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * validf

    axes = tuple(range(1, probs.ndim - 1))
    intersection = jnp.sum(probs * targets, axis=axes)  # [B, C]
    pred_sum = jnp.sum(probs, axis=axes)
    target_sum = jnp.sum(targets, axis=axes)
    numerator = 2.0 * intersection + smooth
    denominator = pred_sum + target_sum + smooth
    # Only reachable with smooth == 0: an empty class is a perfect match (dice 1).
    nonzero = denominator > 0
    dice = jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0), 1.0)

    return 1.0 - _mean_over_classes(dice, class_weights)


def cross_entropy_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    activation: str = "softmax",
    class_weights: jax.Array | None = None,
    ignore_label: int | None = IGNORE_LABEL,
) -> jax.Array:
    """Pixel-wise cross-entropy averaged over the valid pixels of each image.

    ``activation="softmax"``: categorical cross-entropy ``-log softmax(logits)[label]``;
    with ``class_weights`` each pixel is weighted by ``w[label]`` and the image value is the
    weighted mean ``sum_i w_i ce_i / sum_i w_i`` (as PyTorch's ``CrossEntropyLoss``).

    ``activation="sigmoid"``: per-class binary cross-entropy against the one-hot target
    (``optax.sigmoid_binary_cross_entropy``), averaged over classes per pixel (weighted by
    ``class_weights`` normalised by their sum), then over the valid pixels.

    Args:
        logits: ``[B, *spatial, num_classes]`` float logits (computed in float32).
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` integer class ids.
        num_classes: Number of classes ``C``; ids outside ``[0, C)`` are ignored.
        activation: ``"softmax"`` or ``"sigmoid"``.
        class_weights: Optional ``[C]`` non-negative class weights.
        ignore_label: Label id whose pixels are ignored (``None``: only out-of-range ids).

    Returns:
        float32 ``[B]``; 0 for an image without any valid pixel.
    """
    labels, valid, x = _prepare(
        logits, labels, num_classes, activation, class_weights, ignore_label
    )
    safe_labels = jnp.where(valid, labels, 0)
    validf = valid.astype(jnp.float32)

    if activation == "softmax":
        per_pixel = optax.softmax_cross_entropy_with_integer_labels(x, safe_labels)
        pixel_weight = _label_weight(class_weights, safe_labels, validf)
    else:
        targets = jax.nn.one_hot(safe_labels, num_classes, dtype=jnp.float32)
        bce = optax.sigmoid_binary_cross_entropy(x, targets)  # [B, *spatial, C]
        per_pixel = _mean_over_classes(bce, class_weights)
        pixel_weight = validf

    return _mean_over_pixels(per_pixel, pixel_weight)


def dice_ce_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    activation: str = "softmax",
    class_weights: jax.Array | None = None,
    smooth: float = 1.0,
    ignore_label: int | None = IGNORE_LABEL,
    ce_weight: float = 1.0,
) -> jax.Array:
    """Soft Dice plus weighted cross-entropy: ``dice + ce_weight * ce`` per image.

    Both terms use the same ``activation``, ``class_weights`` and ``ignore_label``.

    Args:
        logits: ``[B, *spatial, num_classes]`` float logits.
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` integer class ids.
        num_classes: Number of classes ``C``.
        activation: ``"softmax"`` or ``"sigmoid"``.
        class_weights: Optional ``[C]`` class weights, used by both terms.
        smooth: Dice smoothing (>= 0).
        ignore_label: Label id whose pixels are ignored.
        ce_weight: Multiplier of the cross-entropy term.

    Returns:
        float32 ``[B]``.
    """
    common = dict(
        num_classes=num_classes,
        activation=activation,
        class_weights=class_weights,
        ignore_label=ignore_label,
    )
    dice = soft_dice_loss(logits, labels, smooth=smooth, **common)
    ce = cross_entropy_loss(logits, labels, **common)
    return dice + ce_weight * ce


def _check_gamma(gamma: float) -> None:
    # Only concrete numbers can be checked; a traced gamma is the caller's responsibility.
    if isinstance(gamma, (int, float)) and not (gamma >= 0 and gamma < float("inf")):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma}")


def _focal_modulation(log_one_minus_pt: jax.Array, gamma: float) -> jax.Array:
    """``(1 - p_t) ** gamma`` computed as ``exp(gamma * log(1 - p_t))``.

    The power form has an infinite derivative at ``p_t = 1`` for ``gamma < 1`` and ``0 ** 0``
    at ``gamma = 0``; the log form stays finite. A concrete ``gamma == 0`` returns exactly 1
    so that the loss is then bit-for-bit the cross-entropy (``0 * -inf`` would be NaN when
    ``p_t`` is exactly 1, e.g. with a single softmax class).
    """
    if isinstance(gamma, (int, float)) and gamma == 0:
        return jnp.ones_like(log_one_minus_pt)
    return jnp.exp(gamma * log_one_minus_pt)


def focal_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    activation: str = "softmax",
    class_weights: jax.Array | None = None,
    gamma: float = 2.0,
    ignore_label: int | None = IGNORE_LABEL,
) -> jax.Array:
    """Focal loss (Lin et al. 2017) averaged over the valid pixels of each image.

    ``activation="softmax"`` (multi-class focal): with ``p_t = softmax(logits)[label]``,
    each valid pixel contributes ``fl_i = -(1 - p_t)^gamma * log(p_t)``. The class weight
    plays the role of ``alpha_c``: the image value is the weighted mean
    ``sum_i w[label_i] fl_i / sum_i w[label_i]``, the same reduction as
    :func:`cross_entropy_loss`, so ``gamma = 0`` gives exactly the cross-entropy.

    ``activation="sigmoid"`` (per-class binary focal, as ``optax.losses.sigmoid_focal_loss``
    with ``alpha=None``): for every class ``c`` with the one-hot target ``t_c`` and
    ``p_t = sigmoid(x_c)`` if ``t_c = 1`` else ``1 - sigmoid(x_c)``,
    ``fl_c = -(1 - p_t)^gamma * log(p_t)``; these are **averaged** over classes per pixel
    (weighted by ``class_weights`` normalised by their sum), then over the valid pixels,
    again the reduction of the sigmoid :func:`cross_entropy_loss`.

    ``(1 - p_t)^gamma`` is computed in log space (``log(1 - p_t)`` from a logsumexp over
    the other classes, or ``log_sigmoid`` of the opposite sign), so saturated logits give
    finite values and gradients.

    Args:
        logits: ``[B, *spatial, num_classes]`` float logits (computed in float32).
        labels: ``[B, *spatial]`` or ``[B, *spatial, 1]`` integer class ids.
        num_classes: Number of classes ``C``; ids outside ``[0, C)`` are ignored.
        activation: ``"softmax"`` or ``"sigmoid"``.
        class_weights: Optional ``[C]`` non-negative class weights (``alpha_c``).
        gamma: Focusing exponent, ``>= 0``; 0 is the cross-entropy, 2 the paper's default.
        ignore_label: Label id whose pixels are ignored (``None``: only out-of-range ids).

    Returns:
        float32 ``[B]``; 0 for an image without any valid pixel.
    """
    _check_gamma(gamma)
    labels, valid, x = _prepare(
        logits, labels, num_classes, activation, class_weights, ignore_label
    )
    safe_labels = jnp.where(valid, labels, 0)
    validf = valid.astype(jnp.float32)
    onehot = jax.nn.one_hot(safe_labels, num_classes, dtype=jnp.bool_)

    if activation == "softmax":
        log_z = jax.nn.logsumexp(x, axis=-1)
        log_pt = jnp.sum(jnp.where(onehot, x, 0.0), axis=-1) - log_z
        # log(1 - p_t) = logsumexp over the other classes - log Z, which stays accurate
        # when p_t is close to 1 (log1p(-p_t) would round to log(0) there).
        log_rest = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, x), axis=-1)
        per_pixel = -_focal_modulation(log_rest - log_z, gamma) * log_pt
        pixel_weight = _label_weight(class_weights, safe_labels, validf)
    else:
        log_p = jax.nn.log_sigmoid(x)  # log sigmoid(x)
        log_q = jax.nn.log_sigmoid(-x)  # log (1 - sigmoid(x))
        log_pt = jnp.where(onehot, log_p, log_q)
        log_one_minus_pt = jnp.where(onehot, log_q, log_p)
        per_class = -_focal_modulation(log_one_minus_pt, gamma) * log_pt  # [B, *sp, C]
        per_pixel = _mean_over_classes(per_class, class_weights)
        pixel_weight = validf

    return _mean_over_pixels(per_pixel, pixel_weight)


def dice_focal_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    activation: str = "softmax",
    class_weights: jax.Array | None = None,
    smooth: float = 1.0,
    gamma: float = 2.0,
    ignore_label: int | None = IGNORE_LABEL,
    focal_weight: float = 1.0,
) -> jax.Array:
    """Soft Dice plus weighted focal loss: ``dice + focal_weight * focal`` per image.

    The arguments are :func:`dice_ce_loss`'s, with ``gamma`` (the focal exponent, >= 0)
    and ``focal_weight`` (the focal term's multiplier) in place of ``ce_weight``.

    Returns:
        float32 ``[B]``.
    """
    common = dict(
        num_classes=num_classes,
        activation=activation,
        class_weights=class_weights,
        ignore_label=ignore_label,
    )
    dice = soft_dice_loss(logits, labels, smooth=smooth, **common)
    return dice + focal_weight * focal_loss(logits, labels, gamma=gamma, **common)


LossFn = Callable[[jax.Array, jax.Array], jax.Array]

_LOSSES: dict[str, Callable[..., jax.Array]] = {
    "dice": soft_dice_loss,
    "ce": cross_entropy_loss,
    "dice_ce": dice_ce_loss,
    "focal": focal_loss,
    "dice_focal": dice_focal_loss,
}
LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)


def loss_options(name: str) -> set[str]:
    """The keyword options of the loss ``name`` (``num_classes``, ``smooth``, ...).

    Raises:
        ValueError: Unknown ``name``.
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss name {name!r}; expected one of {sorted(_LOSSES)}")
    return {
        p.name
        for p in inspect.signature(_LOSSES[name]).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def get_loss_fn(name: str, **kwargs) -> LossFn:
    """Returns ``loss(logits, labels) -> [B]`` with the keyword options bound.

    Args:
        name: ``"dice"`` (:func:`soft_dice_loss`), ``"ce"`` (:func:`cross_entropy_loss`),
            ``"dice_ce"`` (:func:`dice_ce_loss`), ``"focal"`` (:func:`focal_loss`) or
            ``"dice_focal"`` (:func:`dice_focal_loss`).
        **kwargs: Keyword options of that function (``num_classes`` is required).

    Returns:
        A function of ``(logits, labels)`` returning the per-example float32 loss ``[B]``.

    Raises:
        ValueError: Unknown ``name``.
        TypeError: An option the chosen loss does not accept, or no ``num_classes``.
    """
    accepted = loss_options(name)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"loss {name!r} does not accept option(s) {unknown}; accepted: {sorted(accepted)}"
        )
    if "num_classes" not in kwargs:
        raise TypeError(f"loss {name!r} needs the keyword option num_classes")
    return functools.partial(_LOSSES[name], **kwargs)
