"""Test-time BatchNorm adaptation (AdaBN): BatchNorm statistics of the images being segmented.

A model trained in one condition (clear weather, one camera) meets shifted input statistics
in another (rain, dusk, another sensor); its BatchNorm layers then normalise with the wrong
mean and variance. AdaBN re-estimates each BatchNorm layer's mean and variance on the
target images and keeps every learned weight. The checkpoint is never touched: the adapted
statistics live in a copy of the variables.

One forward pass in inference mode, with each BatchNorm normalising by the statistics of
its own input in the batch (what it does in training, without dropout), yields every
layer's batch mean and variance (:func:`batch_statistics`). Batches are combined by mode:

- ``set``: the statistics of a whole set of images: the pixel-weighted means of the batch
  means and of the batch second moments (the variance is the pooled second moment minus
  the squared pooled mean). With the whole set in one batch this is exact AdaBN.
- ``stream``: a running average, ``stats = momentum * stats + (1 - momentum) * batch``,
  starting from the checkpoint's statistics (BatchNorm's own training update), for
  frames that arrive one batch at a time.

An exported model (jax.export, ONNX) carries the checkpoint's statistics: adaptation
needs the JAX model.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unet_jax.deploy.options import ADAPT_MODES, OptionError


def _normalise_by_batch(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """Method interceptor: a BatchNorm call normalises by its input's batch statistics.

    The statistics are written into the (mutable) ``batch_stats`` collection before the
    layer runs in inference mode, so it normalises with them and the caller gets them back.
    """
    module = context.module
    if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
        x = jnp.asarray(args[0], jnp.float32)
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        module.put_variable("batch_stats", "mean", mean)
        module.put_variable("batch_stats", "var", jnp.square(x - mean).mean(axes))
    return next_fun(*args, **kwargs)


def batch_statistics(model: nn.Module, variables: Any, images: jax.Array) -> Any:
    """Every BatchNorm layer's input mean and (biased) variance over a batch.

    Args:
      model: the Flax module (its BatchNorm layers are ``flax.linen.BatchNorm``).
      variables: ``{"params", "batch_stats"}``.
      images: [B, H, W, 3] in 0..255, H and W multiples of the model's size multiple.

    Returns:
      A tree shaped like ``variables["batch_stats"]``: float32 ``mean`` and ``var``.
    """
    with nn.intercept_methods(_normalise_by_batch):
        _, updated = model.apply(variables, images, train=False, mutable=["batch_stats"])
    return updated["batch_stats"]


class BatchNormAdapter:
    """Combines the BatchNorm statistics of batches of images (module docstring).

    Args:
      model: the Flax module.
      variables: the checkpoint's variables (never modified).
      mode: "set" or "stream".
      momentum: the running average's weight of the old statistics ("stream").

    Raises:
      OptionError: a mode other than "set"/"stream", a momentum outside [0, 1), or a
        model without BatchNorm statistics.
    """

    def __init__(self, model: nn.Module, variables: Any, *, mode: str, momentum: float) -> None:
        if mode not in ADAPT_MODES[1:]:
            raise OptionError(f"adapt_bn must be one of {ADAPT_MODES}, got {mode!r}")
        if not 0.0 <= momentum < 1.0:
            raise OptionError(f"adapt_momentum must be in [0, 1), got {momentum}")
        if not variables.get("batch_stats"):
            raise OptionError("adapt_bn: the model has no BatchNorm statistics to adapt")
        self._variables = variables
        self._mode, self._momentum = mode, momentum
        self._statistics = jax.jit(functools.partial(batch_statistics, model))
        self._weight = 0.0
        # "set": pixel-weighted sums of the means and second moments; "stream": the stats.
        self._sums: Any = None
        self._stats: Any = _plain(variables["batch_stats"])

    def restarted(self) -> BatchNormAdapter:
        """A new adapter of the same model, variables and mode, that has seen nothing."""
        fresh = copy.copy(self)
        fresh._weight, fresh._sums = 0.0, None
        fresh._stats = _plain(self._variables["batch_stats"])
        return fresh

    @property
    def seen(self) -> bool:
        """Whether any image has been taken into the statistics."""
        return self._weight > 0

    def update(self, images: np.ndarray) -> None:
        """Takes a batch of same-size images into the statistics.

        Args:
          images: [B, H, W, 3] in 0..255, H and W multiples of the size multiple.
        """
        stats = _plain(self._statistics(self._variables, images))
        weight = float(images.shape[0] * images.shape[1] * images.shape[2])
        self._weight += weight
        if self._mode == "stream":
            m = self._momentum
            self._stats = jax.tree.map(lambda old, new: m * old + (1 - m) * new, self._stats, stats)
            return
        moments = {
            path: {"mean": s["mean"], "second": s["var"] + np.square(s["mean"])}
            for path, s in _layers(stats).items()
        }
        if self._sums is None:
            self._sums = jax.tree.map(lambda x: weight * x, moments)
        else:
            self._sums = jax.tree.map(lambda a, x: a + weight * x, self._sums, moments)

    def batch_stats(self) -> Any:
        """The adapted statistics, shaped like the checkpoint's ``batch_stats`` (float32)."""
        if self._mode == "stream" or self._sums is None:
            stats = self._stats
        else:
            pooled = {}
            for path, sums in self._sums.items():
                mean = sums["mean"] / self._weight
                var = np.maximum(sums["second"] / self._weight - np.square(mean), 0.0)
                pooled[path] = {"mean": mean, "var": var}
            stats = _unflatten(pooled)
        return jax.tree.map(lambda x: np.asarray(x, np.float32), stats)

    def variables(self) -> Any:
        """The checkpoint's variables with the adapted ``batch_stats`` (a new dict)."""
        return {**self._variables, "batch_stats": self.batch_stats()}


def _plain(stats: Any) -> dict[str, Any]:
    """A batch_stats tree as nested plain dicts of float64 NumPy arrays."""
    layers = _layers(stats)
    return _unflatten({k: {n: np.asarray(v[n], np.float64) for n in v} for k, v in layers.items()})


def _layers(stats: Any, prefix: tuple = ()) -> dict[tuple, dict[str, Any]]:
    """{path of a BatchNorm layer: {"mean", "var"}} of a nested batch_stats tree."""
    if set(stats) == {"mean", "var"}:
        return {prefix: stats}
    found = {}
    for name, sub in stats.items():
        found.update(_layers(sub, prefix + (name,)))
    return found


def _unflatten(layers: dict[tuple, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in layers.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return tree
