"""What the model's head outputs mean: channels, class logits, probabilities, labels.

The head has one channel per class, except a binary data set trained with
``output_activation="sigmoid"``: one channel, the foreground logit z. Its class logits
are ``[-z, z]``: with per-class sigmoids that is p(background) = 1 - p(foreground), and
the argmax is ``z > 0``, so the loss, the metrics and the predictions treat both heads
alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def num_outputs(num_classes: int, activation: str) -> int:
    """Channels of the head: 1 for a sigmoid head on two classes, else ``num_classes``."""
    return 1 if activation == "sigmoid" and num_classes == 2 else num_classes


def class_logits(logits: jax.Array) -> jax.Array:
    """[..., C] logits with one channel per class (a 1-channel head becomes ``[-z, z]``)."""
    if logits.shape[-1] == 1:
        return jnp.concatenate([-logits, logits], axis=-1)
    return logits


def predict_labels(logits: jax.Array) -> jax.Array:
    """int32 [...] class ids: the argmax of the class logits."""
    return jnp.argmax(class_logits(logits), axis=-1).astype(jnp.int32)
