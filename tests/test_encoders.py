"""ResNet encoders: torchvision's names and shapes, weight files, parity with PyTorch, training.

Oracles: a hand-written transcription of torchvision's ResNet state dict (names and
shapes, from its source), and, where torch and torchvision are importable (see
docs/ENCODERS.md for the venv), torchvision itself on the same images.
"""

import functools
import importlib.util
import pathlib
import re

import jax
import numpy as np
import pytest

from unet_jax import cli, encoder_weights
from unet_jax.resnet import ARCHITECTURES, ENCODER_MODULE, ResNetEncoder, ResNetUNet

HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
HAS_TORCHVISION = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("torchvision") is not None
)
needs_safetensors = pytest.mark.skipif(not HAS_SAFETENSORS, reason="pip install '.[safetensors]'")
needs_torchvision = pytest.mark.skipif(
    not HAS_TORCHVISION, reason="torch + torchvision not installed (docs/ENCODERS.md)"
)
ENCODER_NAMES = list(ARCHITECTURES)


def torchvision_shapes(encoder: str) -> dict[str, tuple]:
    """torchvision.models.resnetXX().state_dict()'s names and shapes, written from its source.

    (resnet.py there: conv1/bn1, layer1..4 of BasicBlock [2,2,2,2] / [3,4,6,3] or
    Bottleneck [3,4,6,3] with expansion 4, downsample = conv1x1 + BatchNorm on the first
    block of a stage whose stride or width changes, fc 1000.)
    """
    bottleneck = encoder == "resnet50"
    layers = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
    shapes: dict[str, tuple] = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers[encoder], strict=True)):
        for j in range(blocks):
            pre = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                out = planes * 4
                convs = [(planes, inplanes, 1), (planes, planes, 3), (out, planes, 1)]
            else:
                out = planes
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for k, (o, c, s) in enumerate(convs, start=1):
                shapes[f"{pre}.conv{k}.weight"] = (o, c, s, s)
                bn(f"{pre}.bn{k}", o)
            if stride != 1 or inplanes != out:
                shapes[f"{pre}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{pre}.downsample.1", out)
            inplanes = out
    shapes["fc.weight"] = (1000, inplanes)
    shapes["fc.bias"] = (1000,)
    return shapes


@functools.cache
def abstract_variables(encoder: str):
    """The whole model's variables as shape structs (no compilation)."""
    model = ResNetUNet(num_classes=3, encoder=encoder, decoder_features=(8, 8, 8, 8, 8))
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.uint8), train=False)
    )


def encoder_variables(encoder: str):
    v = abstract_variables(encoder)
    return {"params": v["params"][ENCODER_MODULE], "batch_stats": v["batch_stats"][ENCODER_MODULE]}


def random_state_dict(encoder: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors of torchvision's shapes (BatchNorm statistics far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in torchvision_shapes(encoder).items():
        if name.endswith("num_batches_tracked"):
            out[name] = np.array(7, np.int64)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
    return out


def save_safetensors(tensors, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def load(encoder, path):
    v = abstract_variables(encoder)
    return encoder_weights.load_into(
        dict(v["params"]), dict(v["batch_stats"]), path, encoder=encoder
    )


# --- names and shapes (everywhere) -------------------------------------------------------


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_encoder_tensors_are_torchvisions(encoder):
    expected = encoder_weights.expected_tensors(encoder_variables(encoder))
    oracle = {
        k: v
        for k, v in torchvision_shapes(encoder).items()
        if not encoder_weights.IGNORED.search(k)
    }
    assert {k: shape for k, (_, _, shape) in expected.items()} == oracle


def test_architecture_is_recognised_from_names():
    for encoder in ENCODER_NAMES:
        assert encoder_weights.architecture_of(list(torchvision_shapes(encoder))) == encoder
    assert encoder_weights.architecture_of(["conv1.weight", "head.weight"]) is None


# --- weight files (safetensors) ---------------------------------------------------------


@needs_safetensors
def test_safetensors_file_lands_on_the_right_leaves(tmp_path):
    tensors = random_state_dict("resnet18")
    path = save_safetensors(tensors, tmp_path / "model.safetensors")
    params, stats = load("resnet18", path)
    enc, enc_stats = params[ENCODER_MODULE], stats[ENCODER_MODULE]
    # Kernels: PyTorch [O, I, kh, kw] at Flax [kh, kw, I, O].
    np.testing.assert_array_equal(
        enc["layer2_0"]["conv1"]["kernel"][1, 2, 5, 7], tensors["layer2.0.conv1.weight"][7, 5, 1, 2]
    )
    np.testing.assert_array_equal(
        enc["layer3_0"]["downsample_0"]["kernel"][0, 0],
        tensors["layer3.0.downsample.0.weight"][:, :, 0, 0].T,
    )
    np.testing.assert_array_equal(enc["bn1"]["scale"], tensors["bn1.weight"])
    np.testing.assert_array_equal(enc["layer4_1"]["bn2"]["bias"], tensors["layer4.1.bn2.bias"])
    np.testing.assert_array_equal(
        enc_stats["layer1_1"]["bn1"]["var"], tensors["layer1.1.bn1.running_var"]
    )
    np.testing.assert_array_equal(
        enc_stats["layer3_0"]["downsample_1"]["mean"], tensors["layer3.0.downsample.1.running_mean"]
    )
    # The decoder and head are untouched (here: still shape structs).
    assert (
        params["Conv_0"]["kernel"] is abstract_variables("resnet18")["params"]["Conv_0"]["kernel"]
    )


def _error(encoder, tensors, tmp_path, name="model.safetensors"):
    path = save_safetensors(tensors, tmp_path / name)
    with pytest.raises(encoder_weights.EncoderWeightsError) as info:
        load(encoder, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert cli.exit_code(info.value) == cli.EXIT_BAD_INPUT
    return message


@needs_safetensors
def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path):
    tensors = random_state_dict("resnet18")
    missing = {k: v for k, v in tensors.items() if k != "layer3.1.bn2.running_var"}
    assert "tensor layer3.1.bn2.running_var is missing" in _error("resnet18", missing, tmp_path)
    extra = {**tensors, "layer1.0.se.weight": np.zeros((4,), np.float32)}
    assert "tensor layer1.0.se.weight is not part of a resnet18" in _error(
        "resnet18", extra, tmp_path
    )
    bad = {**tensors, "layer2.1.conv2.weight": np.zeros((128, 128, 1, 3), np.float32)}
    message = _error("resnet18", bad, tmp_path)
    assert "tensor layer2.1.conv2.weight has shape (128, 128, 1, 3)" in message
    assert "needs (128, 128, 3, 3)" in message
    ints = {**tensors, "bn1.weight": np.zeros((64,), np.int32)}
    assert "tensor bn1.weight holds int32" in _error("resnet18", ints, tmp_path)


@needs_safetensors
def test_file_of_another_architecture_is_named(tmp_path):
    message = _error("resnet18", random_state_dict("resnet50"), tmp_path)
    assert "the file holds a resnet50" in message and "resnet18-f37072fd.pth" in message
    message = _error("resnet34", random_state_dict("resnet18"), tmp_path)
    assert re.search(r"tensor layer1\.2\.\S+ is missing", message)
    assert "the file holds a resnet18" in message


@needs_safetensors
def test_truncated_file_is_refused(tmp_path):
    path = save_safetensors(random_state_dict("resnet18"), tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(encoder_weights.EncoderWeightsError, match="truncated or damaged") as info:
        load("resnet18", path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_missing_file_says_where_to_get_it(tmp_path, encoder):
    path = tmp_path / "weights" / "model.safetensors"
    with pytest.raises(encoder_weights.EncoderWeightsError) as info:
        load(encoder, path)
    message = str(info.value)
    assert f"{path} does not exist" in message and "put it there" in message
    assert encoder_weights.TORCHVISION_FILES[encoder] in message
    assert f"https://huggingface.co/timm/{encoder}.a1_in1k" in message


def test_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "resnet18.npz"
    path.write_bytes(b"")
    with pytest.raises(encoder_weights.EncoderWeightsError, match=r"\.pth/\.pt or a timm"):
        load("resnet18", path)


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    path = tmp_path / "resnet18-f37072fd.pth"
    path.write_bytes(b"PK")
    with pytest.raises(encoder_weights.EncoderWeightsError, match="needs PyTorch"):
        load("resnet18", path)


# --- parity with torchvision (torch venv only) -------------------------------------------


def _torch_model(encoder, seed):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, encoder)(weights=None)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
    return model.eval()


def _torch_features(model, images_nchw):
    import torch

    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(torch.from_numpy(images_nchw))))
        out = [x]
        x = model.maxpool(x)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
            out.append(x)
    return [o.numpy().transpose(0, 2, 3, 1) for o in out]


def _flax_features(encoder, params, stats, images_nhwc):
    variables = {"params": params[ENCODER_MODULE], "batch_stats": stats[ENCODER_MODULE]}
    apply = jax.jit(lambda v, x: ResNetEncoder(encoder).apply(v, x, train=False))
    return [np.asarray(f) for f in apply(variables, images_nhwc)]


def _max_relative_error(actual, expected):
    return max(
        float(np.abs(a - e).max()) / max(1.0, float(np.abs(e).max()))
        for a, e in zip(actual, expected, strict=True)
    )


@needs_torchvision
@needs_safetensors
@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_features_equal_torchvision_from_pth_and_safetensors(tmp_path, encoder):
    import torch

    torch.set_num_threads(1)
    model = _torch_model(encoder, seed=len(encoder))
    state = model.state_dict()
    # The hand-written oracle above is torchvision's own state dict.
    assert {k: tuple(v.shape) for k, v in state.items()} == torchvision_shapes(encoder)
    pth = tmp_path / f"{encoder}.pth"
    torch.save(state, pth)
    st = save_safetensors({k: v.numpy() for k, v in state.items()}, tmp_path / "model.safetensors")

    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 1.0, (2, 64, 96, 3)).astype(np.float32)
    expected = _torch_features(model, images.transpose(0, 3, 1, 2).copy())
    assert [f.shape[1:3] for f in expected] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    for path in (pth, st):
        params, stats = load(encoder, path)
        actual = _flax_features(encoder, params, stats, images)
        assert [a.shape for a in actual] == [e.shape for e in expected]
        assert _max_relative_error(actual, expected) < 2e-5, path.name

    # A wrong mapping shows: two tensors of one shape swapped in the file.
    swapped = {k: v.numpy() for k, v in state.items()}
    a, b = "layer1.0.conv2.weight", "layer1.1.conv2.weight"
    swapped[a], swapped[b] = swapped[b], swapped[a]
    params, stats = load(encoder, save_safetensors(swapped, tmp_path / "swapped.safetensors"))
    assert _max_relative_error(_flax_features(encoder, params, stats, images), expected) > 1e-2


@needs_torchvision
def test_pth_training_checkpoint_and_truncated_pth(tmp_path):
    import torch

    state = _torch_model("resnet18", seed=1).state_dict()
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": state, "epoch": 3}, wrapped)
    params, _ = load("resnet18", wrapped)
    np.testing.assert_array_equal(
        params[ENCODER_MODULE]["conv1"]["kernel"],
        state["conv1.weight"].numpy().transpose(2, 3, 1, 0),
    )
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(encoder_weights.EncoderWeightsError, match="truncated or damaged"):
        load("resnet18", path)


def test_docs_name_the_parity_command():
    text = (pathlib.Path(__file__).parents[1] / "docs" / "ENCODERS.md").read_text()
    assert "tests/test_encoders.py" in text and "torchvision==0.29.1" in text
