"""Pure per-device training and evaluation steps.

Both steps run inside a mapped device axis (``jax.pmap`` or ``shard_map``) named
``axis_name``: gradients, losses and confusion matrices are averaged or summed over it,
and the model's BatchNorm averages its batch statistics over it, so N devices compute
exactly what one device computes on the same global batch.
"""

import jax
import jax.numpy as jnp
import optax

from unet_jax.data.classes import IGNORE_LABEL
from unet_jax.evaluation import metrics
from unet_jax.model.outputs import predict_labels
from unet_jax.run.state import TrainState
from unet_jax.train import losses


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_fn: losses.LossFn,
    axis_name: str,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on this device's share of the global batch.

    A step whose loss or gradients are not finite leaves the whole state unchanged (``step``
    included) and reports ``finite = 0``; the host stops training when it sees it, so no
    checkpoint ever holds non-finite parameters.

    Args:
      state: replicated train state.
      batch: ``image`` uint8 [b, H, W, 3] and ``label`` uint8/int [b, H, W] (255 ignored).
      loss_fn: maps (logits, labels) to per-example losses [b].
      axis_name: the device axis to average over.

    Returns:
      The new state and metrics (``loss``, ``grad_norm``, ``finite``), identical on every
      device.
    """
    key = jax.random.wrap_key_data(state.rng)
    key = jax.random.fold_in(jax.random.fold_in(key, state.step), jax.lax.axis_index(axis_name))
    labels = batch["label"].astype(jnp.int32)

    # The parameters are replicated, the batch is not: differentiate with respect to a
    # per-device ("varying") copy, so each device gets its own gradient and the pmean below
    # averages them. (shard_map's replication check would otherwise transpose the implicit
    # broadcast into a psum, summing instead of averaging; under pmap this is a no-op.)
    params = jax.lax.pcast(state.params, axis_name, to="varying")

    def compute_loss(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            batch["image"],
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        return jnp.mean(loss_fn(logits, labels)), updates

    (loss, updates), grads = jax.value_and_grad(compute_loss, has_aux=True)(params)
    grads = jax.lax.pmean(grads, axis_name)
    loss = jax.lax.pmean(loss, axis_name)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", {}))
    new_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(finite, new, old), new_state, state
    )
    return new_state, {"loss": loss, "grad_norm": grad_norm, "finite": finite.astype(jnp.int32)}


def eval_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_fn: losses.LossFn,
    num_classes: int,
    axis_name: str,
) -> dict[str, jax.Array]:
    """Confusion matrix and loss sum of one (possibly padded) evaluation batch.

    Args:
      state: replicated train state.
      batch: ``image``, ``label`` as in ``train_step`` and ``mask`` bool [b] (False for
        padding examples, which count nowhere).
      loss_fn: maps (logits, labels) to per-example losses [b].
      num_classes: number of classes.
      axis_name: the device axis to sum over.

    Returns:
      ``confusion`` int32 [C, C] (rows ground truth, columns prediction), ``loss_sum`` and
      ``count`` (number of real examples), summed over devices.
    """
    logits = state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    labels = batch["label"].astype(jnp.int32)
    mask = batch["mask"]
    confusion = metrics.confusion_matrix(
        predict_labels(logits),
        labels,
        num_classes=num_classes,
        ignore_label=IGNORE_LABEL,
        mask=mask,
    )
    per_example = loss_fn(logits, labels)
    loss_sum = jnp.sum(jnp.where(mask, per_example, 0.0))
    out = {"confusion": confusion, "loss_sum": loss_sum, "count": jnp.sum(mask.astype(jnp.int32))}
    return jax.lax.psum(out, axis_name)
