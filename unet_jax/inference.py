"""The public reuse API in one import: load a run, apply it, segment images of any size.

::

    import unet_jax

    model, variables = unet_jax.load("runs/demo")          # the best checkpoint
    apply_fn = unet_jax.make_apply_fn(model)               # jitted (variables, images) -> logits
    segmenter = unet_jax.Segmenter.load("runs/demo", tta_flip=True)   # any image size
    labels, probabilities = segmenter.predict(images, with_probabilities=True)

``unet_jax.X`` and ``unet_jax.inference.X`` are the same objects. Everything else of the
package is internal. Every error these raise derives from ``unet_jax.errors.UserError``
(bad input, a missing run or checkpoint; docs/EVALUATION.md, "Errors").
"""

from unet_jax.deploy.options import SegmenterOptions
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.run.loading import load, make_apply_fn

__all__ = ["Segmenter", "SegmenterOptions", "load", "make_apply_fn"]
