"""Segmenting with an exported ONNX model (ONNX Runtime on the CPU), by the JAX path's rules.

::

    model = load_onnx_model("unet.onnx")          # reads unet.onnx.json, the sidecar
    logits = model.logits(images)                 # uint8 [B, H, W, 3], H, W multiples
    segmenter = model.segmenter(batch_size=8)     # any image size: pad or tile
    labels, probs = segmenter.predict(images, with_probabilities=True)

``model.segmenter`` is a :class:`unet_jax.Segmenter` whose ``apply_fn`` runs the
ONNX session (through ``jax.pure_callback``): the padding, tiling, blending, flip TTA,
output activation and argmax are the JAX path's own code, not a copy, so both backends
give the same outputs for the same logits. Class names, palette, activation, size
multiple and training size come from the sidecar that ``python -m unet_jax.export
--format onnx`` writes next to the model.

Sessions use ``threads`` intra-op threads (default ``ModelSource.onnx_threads``) with thread
spinning off: spinning threads burn CPU that other processes on a shared machine (and the
input pipeline) need.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unet_jax import storage
from unet_jax.data.classes import ClassSet, ClassSetError
from unet_jax.deploy.options import ModelSource, OptionError
from unet_jax.deploy.segmenter import Segmenter
from unet_jax.errors import InferenceError, import_optional
from unet_jax.model.outputs import num_outputs

DEFAULT_THREADS = ModelSource.onnx_threads  # the one default, in deploy/options.py

# The graph input types unet_jax writes (``onnx_export.ONNX_TYPES``), as numpy dtypes.
_ONNX_INPUT_TYPES = {
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(int16)": "int16",
    "tensor(float)": "float32",
}


class OnnxModelError(InferenceError, ValueError):
    """An ONNX model or sidecar that cannot be used; the message names the file."""


def require_onnxruntime() -> Any:
    """Imports ``onnxruntime``, or raises OnnxModelError with the install line."""
    return import_optional(
        "onnxruntime",
        OnnxModelError,
        "ONNX inference needs the optional 'onnxruntime' package: pip install -e '.[onnx]'",
    )


def session_options(*, threads: int = DEFAULT_THREADS) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads, no spinning, all graph
    optimisations (which include the CPU provider's blocked NCHWc convolutions).

    Args:
      threads: intra-op threads (>= 1).

    Returns:
      ``onnxruntime.SessionOptions``.

    Raises:
      OptionError: ``threads`` < 1.
    """
    if threads < 1:
        raise OptionError(f"ONNX Runtime threads must be >= 1, got {threads}")
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _read_sidecar(path: pathlib.Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    if not side.is_file():
        raise OnnxModelError(
            f"{side} is missing: the ONNX model needs the sidecar that "
            "'python -m unet_jax.export --format onnx' writes next to it"
        )
    try:
        data = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OnnxModelError(f"{side}: unreadable sidecar ({e})") from e
    required = ("num_classes", "class_names", "palette", "input", "output")
    missing = [k for k in required if not isinstance(data, dict) or k not in data]
    if missing:
        raise OnnxModelError(f"{side}: not a unet_jax sidecar (missing {missing})")
    return data


@dataclasses.dataclass
class OnnxModel:
    """An ONNX Runtime session of an exported U-Net and its sidecar.

    Attributes:
      path: the .onnx file.
      session: the ``onnxruntime.InferenceSession``.
      sidecar: the sidecar's content (``path + ".json"``).
    """

    path: pathlib.Path
    session: Any
    sidecar: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return int(self.sidecar["num_classes"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.sidecar["class_names"])

    @property
    def palette(self) -> np.ndarray:
        """uint8 [C, 3] class colours."""
        return np.asarray(self.sidecar["palette"], np.uint8).reshape(-1, 3)

    @property
    def classes(self) -> ClassSet:
        """The run's class set as the sidecar records it (names, colours, label format)."""
        try:
            return ClassSet.from_names(
                self.class_names,
                self.palette.tolist(),
                label_format=self.sidecar.get("label_format", "id"),
            )
        except ClassSetError as e:
            raise OnnxModelError(f"{self.path}.json: {e}") from e

    @property
    def config(self) -> dict[str, Any]:
        """The training configuration recorded in the sidecar (a plain dict)."""
        return dict(self.sidecar.get("config") or {})

    @property
    def size_multiple(self) -> int:
        return int(self.sidecar["input"]["size_multiple"])

    @property
    def activation(self) -> str:
        return str(self.sidecar["output"]["activation"])

    @property
    def training_size(self) -> tuple[int, int]:
        h, w = self.sidecar["input"]["training_size"]
        return int(h), int(w)

    @property
    def checkpoint(self) -> dict[str, Any]:
        """``{"requested": ..., "step": ...}`` of the exported checkpoint."""
        return dict(self.sidecar.get("checkpoint") or {})

    @property
    def output_channels(self) -> int:
        """Logit channels of the graph's output (the apply_fn's last axis)."""
        return int(self.session.get_outputs()[0].shape[-1])

    @property
    def input_kind(self) -> tuple[np.dtype, int]:
        """(dtype, bands) of the graph's input (uint8 and 3 for 8-bit RGB)."""
        graph_input = self.session.get_inputs()[0]
        return np.dtype(_ONNX_INPUT_TYPES[graph_input.type]), int(graph_input.shape[-1])

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Runs the model: what ``make_apply_fn(model)(variables, images)`` returns.

        Args:
          images: [B, H, W, bands] of the input's dtype (8-bit RGB: uint8 in 0..255), H and
            W multiples of ``size_multiple``.

        Returns:
          float32 logits [B, H, W, output_channels].

        Raises:
          OptionError: another dtype or shape (naming it).
        """
        images = np.asarray(images)
        dtype, bands = self.input_kind
        if images.dtype != dtype:
            raise OptionError(f"{self.path}: images must be {dtype}, got {images.dtype}")
        m = self.size_multiple
        if images.ndim != 4 or images.shape[-1] != bands:
            raise OptionError(f"{self.path}: images must be [B, H, W, {bands}], got {images.shape}")
        if not images.shape[0] or images.shape[1] % m or images.shape[2] % m or 0 in images.shape:
            raise OptionError(
                f"{self.path}: height and width must be positive multiples of {m} and the batch "
                f"non-empty, got {images.shape} (pad first, or use model.segmenter())"
            )
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.ascontiguousarray(images)})[0]

    def apply_fn(self) -> Callable[[Any, jax.Array], jax.Array]:
        """``(variables, images) -> logits`` for :class:`Segmenter`, usable under jit.

        The session runs in a ``jax.pure_callback``; ``variables`` are ignored (the
        weights are in the graph).
        """
        channels = self.output_channels

        def apply_fn(variables: Any, images: jax.Array) -> jax.Array:
            del variables
            if images.dtype != self.input_kind[0]:
                raise OptionError(
                    f"{self.path}: images must be {self.input_kind[0]}, got {images.dtype}"
                )
            result = jax.ShapeDtypeStruct(images.shape[:3] + (channels,), jnp.float32)
            return jax.pure_callback(self.logits, result, images)

        return apply_fn

    def segmenter(self, **kwargs: Any) -> Segmenter:
        """A :class:`Segmenter` on this model (one device: the session is not a JAX device).

        Args:
          **kwargs: the Segmenter's options (tta_flip, batch_size, max_side, tile_size,
            tile_overlap).

        Returns:
          The Segmenter.
        """
        return Segmenter(
            self.apply_fn(),
            {},
            size_multiple=self.size_multiple,
            activation=self.activation,
            devices=jax.local_devices()[:1],
            **kwargs,
        )


def load_onnx_model(path: str | pathlib.Path, *, threads: int = DEFAULT_THREADS) -> OnnxModel:
    """Opens an exported ONNX model and its sidecar.

    Args:
      path: the .onnx file (its sidecar is ``path + ".json"``).
      threads: ONNX Runtime intra-op threads.

    Returns:
      The model.

    Raises:
      OnnxModelError: missing or unreadable file, not an ONNX model, not a unet_jax model
        (input not uint8 [B, H, W, 3]), missing or unreadable sidecar, or onnxruntime
        not installed.
      OptionError: ``threads`` < 1.
    """
    path = storage.path(path, what="ONNX model")
    options = session_options(threads=threads)
    if not path.exists():
        raise OnnxModelError(f"ONNX model {path} does not exist")
    if not path.is_file():
        raise OnnxModelError(f"ONNX model {path} is not a file")
    ort = require_onnxruntime()
    try:
        # ONNX Runtime opens local files only: a model in a bucket is handed in as bytes.
        model = path.read_bytes() if storage.is_url(path) else str(path)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxModelError(f"{path} is not a loadable ONNX model ({first_line})") from e
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (
        len(inputs) != 1
        or len(outputs) != 1
        or inputs[0].type not in _ONNX_INPUT_TYPES
        or len(inputs[0].shape) != 4
        or not isinstance(inputs[0].shape[-1], int)
    ):
        found = [(i.name, i.type, i.shape) for i in inputs]
        raise OnnxModelError(
            f"{path} is not a unet_jax model: expected one input [B, H, W, bands] and one "
            f"output, got inputs {found} and {len(outputs)} output(s)"
        )
    model = OnnxModel(path=path, session=session, sidecar=_read_sidecar(path))
    expected = num_outputs(model.num_classes, model.activation)
    if model.output_channels != expected:
        raise OnnxModelError(
            f"{path}: {model.output_channels} logit channels, but its sidecar's "
            f"{model.num_classes} classes with a {model.activation} head need {expected}"
        )
    return model
