"""Encoder weight files: mapped by name, errors naming file and tensor, parity with PyTorch."""

import pathlib
import re

import jax
import numpy as np
import pytest

from tests.encoder_helpers import (
    ENCODER_NAMES,
    abstract_variables,
    load,
    needs_safetensors,
    needs_torchvision,
    random_state_dict,
    save_safetensors,
    torchvision_shapes,
)
from unet_jax import cli
from unet_jax.model import encoder_weights
from unet_jax.model.resnet import ENCODER_MODULE, ResNetEncoder

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
    text = (pathlib.Path(__file__).parents[2] / "docs" / "ENCODERS.md").read_text()
    assert "tests/model/test_encoder_weights.py" in text and "torchvision==0.29.1" in text
