"""ImageNet weights for the ResNet encoders from the files users have (``model.encoder_weights``).

Two formats, told apart by the file's suffix:

- ``.pth`` / ``.pt``: a torchvision state dict (``torch.save(model.state_dict())``), e.g.
  ``resnet18-f37072fd.pth``; read with ``torch.load(weights_only=True)``, so it needs torch
  (optional; a clear error without it).
- ``.safetensors``: timm's files on Hugging Face (``timm/resnet18.a1_in1k``'s
  ``model.safetensors``, ...), read with the ``safetensors`` package's numpy API (no torch).

Both use torchvision's names (``layer1.0.conv1.weight``, ``bn1.running_mean``, ...), which
are the encoder's module names in ``unet_jax.resnet`` with "." for "_". Every tensor the
encoder has must be in the file with the right shape and every tensor of the file must
belong to the encoder, except the classifier (``fc.*``) and ``num_batches_tracked``
(PyTorch's counter, unused with a fixed momentum), which are ignored. Anything else is an
`EncoderWeightsError` naming the file and the tensor. Nothing is downloaded.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from unet_jax.errors import UserError, import_optional
from unet_jax.model.resnet import ARCHITECTURES, ENCODER_MODULE

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"
IGNORED = re.compile(r"^fc\.|\.num_batches_tracked$")
# Official downloads (torchvision's IMAGENET1K_V1 weights; timm's Hugging Face models).
TORCHVISION_FILES = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
}
TIMM_MODELS = {
    "resnet18": "timm/resnet18.a1_in1k",
    "resnet34": "timm/resnet34.a1_in1k",
    "resnet50": "timm/resnet50.a1_in1k",
}
# torchvision's deeper ResNets, only to name what a file of another architecture holds.
_OTHER_ARCHITECTURES = {
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
# Flax leaf name -> PyTorch tensor suffix, per collection.
_PARAM_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}
_STAT_NAMES = {"mean": "running_mean", "var": "running_var"}


class EncoderWeightsError(UserError, ValueError):
    """An encoder weights file that cannot be used; the message names the file and tensor.

    A `UserError`: the commands end with one line and exit code 2.
    """


def download_hint(encoder: str) -> str:
    """Where to get the weights of ``encoder`` (the official pages and exact file names)."""
    return (
        f"download {TORCHVISION_FILES[encoder]} (torchvision) or model.safetensors from "
        f"https://huggingface.co/{TIMM_MODELS[encoder]} (timm); see docs/ENCODERS.md"
    )


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    torch = import_optional(
        "torch",
        EncoderWeightsError,
        f"{path}: reading a .pth file needs PyTorch (pip install torch), or use timm's "
        ".safetensors file of the same model (pip install -e '.[safetensors]')",
    )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise EncoderWeightsError(
            f"{path}: not a readable PyTorch file (truncated or damaged?): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(loaded, dict):
        raise EncoderWeightsError(
            f"{path}: holds a {type(loaded).__name__}, not a state dict (save "
            "model.state_dict(), not the model)"
        )
    return {
        str(k): v.detach().float().numpy() if v.is_floating_point() else v.numpy()
        for k, v in loaded.items()
        if isinstance(v, torch.Tensor)
    }


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    load_file = import_optional(
        "safetensors.numpy",
        EncoderWeightsError,
        f"{path}: reading a .safetensors file needs the 'safetensors' package: "
        "pip install -e '.[safetensors]'",
    ).load_file
    try:
        return dict(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - SafetensorError and numpy's errors alike
        raise EncoderWeightsError(
            f"{path}: not a readable .safetensors file (truncated or damaged?): "
            f"{type(e).__name__}: {e}"
        ) from e


def read_tensors(path: str | pathlib.Path, *, encoder: str) -> dict[str, np.ndarray]:
    """All tensors of a weights file, by name.

    Args:
      path: a ``.pth``/``.pt`` or ``.safetensors`` file.
      encoder: the model's encoder, for the download hint of a missing file.

    Returns:
      ``{name: array}`` (floating tensors as float32).

    Raises:
      EncoderWeightsError: a missing, unreadable or unknown kind of file.
    """
    path = pathlib.Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX):
        raise EncoderWeightsError(
            f"config.model.encoder_weights={str(path)!r}: expected a torchvision "
            f"{'/'.join(TORCH_SUFFIXES)} or a timm {SAFETENSORS_SUFFIX} file"
        )
    if not path.is_file():
        raise EncoderWeightsError(
            f"config.model.encoder_weights: {path} does not exist; {download_hint(encoder)} "
            "and put it there (nothing is downloaded at run time)"
        )
    return _read_safetensors(path) if suffix == SAFETENSORS_SUFFIX else _read_torch(path)


def torch_name(key: tuple[str, ...], collection: str) -> str:
    """torchvision's name of an encoder leaf, e.g. layer1_0/conv1/kernel -> layer1.0.conv1.weight.

    Args:
      key: the leaf's path inside the encoder's variables.
      collection: "params" or "batch_stats".
    """
    names = _PARAM_NAMES if collection == "params" else _STAT_NAMES
    *modules, leaf = key
    return ".".join([m.replace("_", ".") for m in modules] + [names[leaf]])


def to_torch_layout(array: np.ndarray) -> np.ndarray:
    """A Flax leaf in PyTorch's layout: HWIO kernels become OIHW, vectors stay."""
    return np.transpose(array, (3, 2, 0, 1)) if np.ndim(array) == 4 else np.asarray(array)


def from_torch_layout(array: np.ndarray) -> np.ndarray:
    """A PyTorch tensor in Flax's layout: OIHW kernels become HWIO, vectors stay."""
    return np.transpose(array, (2, 3, 1, 0)) if np.ndim(array) == 4 else np.asarray(array)


def expected_tensors(variables: dict[str, Any]) -> dict[str, tuple[str, tuple[str, ...], tuple]]:
    """The tensors a weights file must hold for an encoder.

    Args:
      variables: the encoder's variables, ``{"params": ..., "batch_stats": ...}`` (arrays
        or shape structs).

    Returns:
      ``{torch name: (collection, leaf path, PyTorch shape)}``.
    """
    out = {}
    for collection in ("params", "batch_stats"):
        for key, leaf in traverse_util.flatten_dict(dict(variables[collection])).items():
            shape = tuple(np.shape(leaf))
            torch_shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
            out[torch_name(key, collection)] = (collection, key, torch_shape)
    return out


def architecture_of(names: list[str]) -> str | None:
    """Which torchvision ResNet a file's tensor names describe (None: no ResNet known here)."""
    blocks = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for n in names if (m := re.match(rf"layer{stage}\.(\d+)\.", n))}
        blocks.append(max(indices) + 1 if indices else 0)
    block = "bottleneck" if any(".conv3." in n for n in names) else "basic"
    for name, arch in ARCHITECTURES.items():
        if (arch.block, arch.layers) == (block, tuple(blocks)):
            return name
    return _OTHER_ARCHITECTURES.get((block, tuple(blocks)))


FIRST_CONV = "conv1.weight"  # the stem convolution, the only one that sees the image


def adapt_first_conv(weight: np.ndarray, *, in_channels: int) -> np.ndarray:
    """An RGB stem kernel [O, 3, k, k] for ``in_channels`` bands, as SMP adapts it.

    One band: the sum of the RGB kernels (a grey image seen as R = G = B gives the same
    response). N > 3 bands (and 2): the RGB kernels repeated (band i gets kernel i mod 3),
    scaled by 3/N so the response to N equal bands stays that of RGB.

    Args:
      weight: the pretrained kernel in PyTorch's layout.
      in_channels: the model's input bands.

    Returns:
      float [O, in_channels, k, k].
    """
    weight = np.asarray(weight, np.float32)
    if in_channels == 1:
        return weight.sum(axis=1, keepdims=True)
    repeated = weight[:, [i % 3 for i in range(in_channels)]]
    return repeated * np.float32(3 / in_channels)


def match_tensors(
    tensors: dict[str, np.ndarray],
    expected: dict[str, tuple[str, tuple[str, ...], tuple]],
    *,
    path: Any,
    encoder: str,
) -> dict[str, dict[tuple[str, ...], np.ndarray]]:
    """Maps a file's tensors onto the encoder's leaves, checking every name and shape.

    Args:
      tensors: the file's tensors by name (``read_tensors``).
      expected: ``expected_tensors`` of the encoder.
      path: the file, for messages.
      encoder: the model's encoder name, for messages.

    Returns:
      ``{collection: {leaf path: array in Flax layout}}``.

    Raises:
      EncoderWeightsError: the first missing, unexpected or mis-shaped tensor (a file of
        another architecture is named as such).
    """
    used = {k: v for k, v in tensors.items() if not IGNORED.search(k)}
    missing = [k for k in expected if k not in used]
    unexpected = [k for k in used if k not in expected]
    if missing or unexpected:
        held = architecture_of(list(used))
        what = f"; the file holds a {held}" if held and held != encoder else ""
        if missing:
            problem = f"tensor {missing[0]} is missing"
            count = len(missing)
        else:
            problem = f"tensor {unexpected[0]} is not part of a {encoder} encoder"
            count = len(unexpected)
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise EncoderWeightsError(
            f"{path}: {problem}{more}{what}; config.model.encoder={encoder!r} needs the "
            f"{encoder} weights ({download_hint(encoder)})"
        )
    out: dict[str, dict[tuple[str, ...], np.ndarray]] = {"params": {}, "batch_stats": {}}
    for name, (collection, key, shape) in expected.items():
        array = np.asarray(used[name])
        if name == FIRST_CONV and array.ndim == 4 and array.shape[1] == 3 != shape[1]:
            array = adapt_first_conv(array, in_channels=shape[1])
        if tuple(array.shape) != shape:
            raise EncoderWeightsError(
                f"{path}: tensor {name} has shape {tuple(array.shape)}, a {encoder} encoder "
                f"needs {shape}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise EncoderWeightsError(
                f"{path}: tensor {name} holds {array.dtype} values, not floating-point weights"
            )
        out[collection][key] = from_torch_layout(array.astype(np.float32))
    return out


def load_into(
    params: dict[str, Any],
    batch_stats: dict[str, Any],
    path: str | pathlib.Path,
    *,
    encoder: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's variables with the encoder's replaced by a weights file's.

    Args:
      params, batch_stats: the whole model's variables (the encoder under ``"encoder"``).
      path: the weights file.
      encoder: the model's encoder ("resnet18", ...).

    Returns:
      ``(params, batch_stats)``; the decoder and head keep their values.

    Raises:
      EncoderWeightsError: see `read_tensors` and `match_tensors`.
    """
    fresh = {"params": params[ENCODER_MODULE], "batch_stats": batch_stats[ENCODER_MODULE]}
    tensors = read_tensors(path, encoder=encoder)
    matched = match_tensors(tensors, expected_tensors(fresh), path=path, encoder=encoder)
    loaded = {}
    for collection, leaves in matched.items():
        flat = traverse_util.flatten_dict(dict(fresh[collection]))
        loaded[collection] = traverse_util.unflatten_dict(
            {k: jnp.asarray(leaves[k], dtype=flat[k].dtype) for k in flat}
        )
    return (
        {**params, ENCODER_MODULE: loaded["params"]},
        {**batch_stats, ENCODER_MODULE: loaded["batch_stats"]},
    )


def initialise(
    state: Any, path: str, *, encoder: str, log: Callable[[str], None] = print
) -> tuple[Any, dict[str, Any]]:
    """A fresh train state whose encoder starts from a weights file.

    Args:
      state: this run's freshly created TrainState (step 0).
      path: ``config.model.encoder_weights``.
      encoder: ``config.model.encoder``.
      log: where to say what was loaded.

    Returns:
      (the state, JSON-ready ``{"file", "tensors"}`` for the run's records).
    """
    params, stats = load_into(dict(state.params), dict(state.batch_stats), path, encoder=encoder)
    resolved = pathlib.Path(path).expanduser().resolve()
    count = len(
        expected_tensors({"params": params[ENCODER_MODULE], "batch_stats": stats[ENCODER_MODULE]})
    )
    log(f"Encoder {encoder} initialised from {resolved} ({count} tensors)")
    return state.replace(params=params, batch_stats=stats), {
        "file": str(resolved),
        "tensors": count,
    }
