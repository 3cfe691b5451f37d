"""jax2onnx against the hand-written ONNX graph (``unet_jax.deploy.onnx_export``).

For each model (the classic U-Net at the demo and full widths, a ResNet-18 encoder U-Net)
at its size: converts ``model.apply`` with jax2onnx, builds the hand-written graph from
the same variables (random, with BatchNorm statistics and scales far from 0 and 1, so a
wrong fold would show), and reports the largest logit difference of each against JAX on
the real frames (resized to the size), whether the labels are identical, and the ONNX
Runtime time of both (2 intra-op threads, the product's session options), interleaved
round by round so that a shared CPU's load affects both alike. docs/ONNX.md has the
result. jax2onnx is not a dependency: run it from an environment that has it:

    nice -n 10 /work/venv-j2o/bin/python benchmarks/jax2onnx_try.py --rounds 15
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys
import time

import jax
import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from unet_jax.configs import default  # noqa: E402
from unet_jax.deploy.onnx_export import build_model  # noqa: E402
from unet_jax.deploy.onnx_inference import session_options  # noqa: E402
from unet_jax.model.factory import create_model  # noqa: E402

REAL = REPO.parent / "shared" / "real_samples" / "CameraRGB"
MODELS = {  # name -> (config.model fields, image size)
    "unet demo widths 128": (dict(features=(16, 32, 64, 128), bridge_features=256), 128),
    "unet full widths 256": (dict(features=(64, 128, 256, 512), bridge_features=1024), 256),
    "resnet18 128": (dict(encoder="resnet18"), 128),
    "resnet18 256": (dict(encoder="resnet18"), 256),
}


def perturbed(variables, seed: int = 1):
    """BatchNorm statistics and affine parameters far from their initial 0 and 1."""
    rng = np.random.default_rng(seed)

    def change(path, x):
        name = jax.tree_util.keystr(path)
        x = np.asarray(x)
        if name.endswith("['mean']") or name.endswith("['bias']"):
            return x + rng.normal(0, 0.3, x.shape).astype(x.dtype)
        if name.endswith("['var']") or name.endswith("['scale']"):
            return x * rng.uniform(0.5, 2.0, x.shape).astype(x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(change, variables)


def convert(jax2onnx, model, variables, size: int):
    """jax2onnx's ONNX model of ``model.apply(variables, images)`` for one frame of ``size``."""
    return jax2onnx.to_onnx(
        functools.partial(apply, model, variables),
        [np.zeros((1, size, size, 3), np.uint8)],
        model_name="unet_jax",
        opset=17,
        input_names=["images"],
        output_names=["logits"],
    )


def apply(model, variables, images):
    return model.apply(variables, images, train=False)


def frames(size: int) -> np.ndarray:
    files = sorted(REAL.glob("*.png"))
    return np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR))
            for f in files
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    import jax2onnx
    import onnxruntime as ort

    for name, (fields, size) in MODELS.items():
        if args.only and name not in args.only:
            continue
        config = default.get_config()
        config.num_classes = 13
        config.model.conv_impl = "xla"  # lax.conv: what a converter maps to ONNX Conv
        config.model.update(fields)
        model = create_model(config)
        images = frames(size)
        variables = jax.jit(
            lambda m=model, s=size: m.init(
                jax.random.key(0), np.zeros((1, s, s, 3), np.uint8), train=False
            )
        )()
        variables = perturbed(variables)
        reference = np.asarray(jax.jit(functools.partial(apply, model))(variables, images))

        start = time.perf_counter()
        try:
            converted = convert(jax2onnx, model, variables, size)
        except Exception as e:  # noqa: BLE001 - report whatever the converter raises
            print(f"{name}: jax2onnx failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
            # jax2onnx replaces flax.linen.max_pool while it traces; its replacement takes
            # the window as a keyword only and the padding as a string ("SAME"/"VALID"), not
            # the ResNet stem's explicit ((1, 1), (1, 1)). Without the replacement the pool
            # is lax.reduce_window, which jax2onnx also converts.
            from jax2onnx.plugins.flax.linen.max_pool import MaxPoolPlugin

            original = MaxPoolPlugin.__dict__["binding_specs"]
            MaxPoolPlugin.binding_specs = classmethod(lambda cls: [])
            try:
                converted = convert(jax2onnx, model, variables, size)
            except Exception as e:  # noqa: BLE001
                print(f"  without its max_pool patch too: {type(e).__name__}: {e}", flush=True)
                continue
            finally:
                MaxPoolPlugin.binding_specs = original
            print("  converted without jax2onnx's flax.linen.max_pool patch", flush=True)
        convert_s = time.perf_counter() - start
        hand = build_model(model, variables)
        sessions = {}
        for kind, proto in (("hand-built", hand), ("jax2onnx", converted)):
            options = session_options(threads=args.threads)
            sessions[kind] = ort.InferenceSession(
                proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        outputs = {}
        for kind, session in sessions.items():
            # jax2onnx fixed the batch at the example's 1: feed one frame at a time.
            outputs[kind] = np.concatenate(
                [session.run(None, {"images": images[i : i + 1]})[0] for i in range(len(images))]
            )
        times: dict[str, list[float]] = {k: [] for k in sessions}
        one = images[:1]
        for session in sessions.values():
            session.run(None, {"images": one})  # warm-up
        for _ in range(args.rounds):
            for kind, session in sessions.items():
                tick = time.perf_counter()
                session.run(None, {"images": one})
                times[kind].append(time.perf_counter() - tick)
        labels = reference.argmax(-1)
        print(
            f"{name}: jax2onnx conversion {convert_s:.1f} s, "
            f"{len(converted.graph.node)} nodes vs {len(hand.graph.node)} hand-built",
            flush=True,
        )
        for kind in sessions:
            err = float(np.abs(outputs[kind] - reference).max())
            same = int((outputs[kind].argmax(-1) == labels).sum())
            median = statistics.median(times[kind]) * 1e3
            print(
                f"  {kind:10s} max |logit - JAX| {err:.2e} (logits span "
                f"{reference.max() - reference.min():.1f}), labels identical "
                f"{same}/{labels.size} px on {len(images)} real frames, "
                f"median {median:.1f} ms/img ({args.rounds} interleaved rounds)",
                flush=True,
            )
        ratio = statistics.median(times["jax2onnx"]) / statistics.median(times["hand-built"])
        print(f"  jax2onnx time / hand-built time: {ratio:.3f}", flush=True)


if __name__ == "__main__":
    main()
