"""The one option set of eval.py, predict and export: generated flags, one name per option."""

import argparse
import ast
import dataclasses
import pathlib

import pytest

from tests.conftest import REPO_ROOT
from unet_jax.deploy import command_line
from unet_jax.deploy import options as option_flags
from unet_jax.deploy.options import (
    ExportOptions,
    ModelSource,
    OptionError,
    PredictOptions,
    SegmenterOptions,
)
from unet_jax.evaluation.options import EvalOptions

ALL = (PredictOptions, ExportOptions, EvalOptions)


def _argparse(cls, argv):
    parser = argparse.ArgumentParser()
    command_line.add_arguments(parser, cls)
    return command_line.from_flags(cls, parser.parse_args(argv))


@pytest.mark.parametrize("cls", ALL)
def test_no_flags_give_the_dataclass_defaults(cls):
    assert _argparse(cls, []) == cls()


def test_flags_set_nested_and_inherited_fields():
    argv = ["--tta_flip", "--progress=false", "--checkpoint=latest", "--batch_size=3"]
    argv += ["--onnx=m.onnx", "--onnx_threads=1"]
    expected = PredictOptions(
        checkpoint="latest",
        onnx="m.onnx",
        onnx_threads=1,
        progress=False,
        segment=SegmenterOptions(tta_flip=True, batch_size=3),
    )
    assert _argparse(PredictOptions, argv) == expected
    evaluated = _argparse(EvalOptions, argv + ["--split=validation"])
    assert evaluated.segment == expected.segment and evaluated.split == "validation"
    assert (evaluated.checkpoint, evaluated.onnx, evaluated.onnx_threads) == ("latest", "m.onnx", 1)


def test_list_flags():
    assert _argparse(ExportOptions, ["--platforms=cpu, tpu"]).platforms == ("cpu", "tpu")


def test_the_model_and_segmenting_flags_have_one_name_in_every_command():
    shared = {f.name for f in option_flags.flat_fields(ModelSource)}
    shared |= {f.name for f in option_flags.flat_fields(SegmenterOptions)}
    for cls in (PredictOptions, EvalOptions):
        names = [f.name for f in option_flags.flat_fields(cls)]
        assert shared <= set(names) and len(names) == len(set(names))
    assert "checkpoint" in {f.name for f in option_flags.flat_fields(ExportOptions)}


def test_override_by_flat_name():
    options = option_flags.build(EvalOptions, split="train", tile_size=256, onnx_threads=3)
    assert options.split == "train" and options.segment.tile_size == 256
    assert options.onnx_threads == 3 and options.segment.max_side == SegmenterOptions().max_side
    again = option_flags.override(options, segment=SegmenterOptions(tta_flip=True), max_side=99)
    assert again.segment == SegmenterOptions(tta_flip=True, max_side=99)
    with pytest.raises(TypeError, match="no option"):
        option_flags.override(options, tta_flop=True)


def test_every_field_has_help():
    for cls in ALL:
        for field in option_flags.flat_fields(cls):
            assert field.metadata["help"], field.name


def _string_defaults(path: pathlib.Path, value: str) -> list[str]:
    """Function and field defaults equal to ``value`` in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        defaults = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defaults = node.args.defaults + [d for d in node.args.kw_defaults if d]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "option":
            defaults = node.args[:1]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            defaults = [node.value]
        found += [f"{path}:{d.lineno}" for d in defaults if getattr(d, "value", None) == value]
    return found


def test_the_checkpoint_default_is_written_once():
    files = sorted((REPO_ROOT / "unet_jax").rglob("*.py")) + [REPO_ROOT / "eval.py"]
    assert [hit for path in files for hit in _string_defaults(path, "best")] == []
    source = (REPO_ROOT / "unet_jax" / "run" / "checkpoint_choice.py").read_text()
    assert 'DEFAULT_CHECKPOINT = "best"' in source
    assert ModelSource().checkpoint == ExportOptions().checkpoint == "best"


def test_eval_options_do_not_restate_the_model_defaults():
    own = {f.name for f in dataclasses.fields(EvalOptions)} - {
        f.name for f in dataclasses.fields(ModelSource)
    }
    assert "checkpoint" not in own and "onnx_threads" not in own


def test_recipe_flags_left_out_stay_unset_for_the_run_to_fill():
    assert _argparse(PredictOptions, []).segment.tta_flip is None
    argv = ["--tta_flip=false", "--tta_scales=1,0.5", "--adapt_bn=stream", "--adapt_momentum=0.5"]
    argv += ["--scale=native"]
    options = _argparse(PredictOptions, argv)
    assert options.scale == "native"
    assert options.segment == SegmenterOptions(
        tta_flip=False, tta_scales=(1.0, 0.5), adapt_bn="stream", adapt_momentum=0.5
    )
    filled = SegmenterOptions().for_config({"inference": {"tta_flip": True}})
    assert filled.tta_flip is True and filled.adapt_bn == "off"
    assert filled.tta_scales == (1.0,) and filled.batch_size == SegmenterOptions.FALLBACK_BATCH_SIZE
    kept = options.segment.for_config({"inference": {"tta_flip": True, "adapt_bn": "set"}})
    assert kept.tta_flip is False and kept.adapt_bn == "stream"  # given options win
    # A momentum is for a running average: with no stream adaptation it is a mistake.
    lone = SegmenterOptions(adapt_momentum=0.5)
    with pytest.raises(OptionError, match="adapt_momentum=0.5 applies with adapt_bn=stream only"):
        lone.for_config({"inference": {"adapt_bn": "set"}})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),
        (["--progress"], True),
        (["--progress=false"], False),
        (["--progress=False"], False),
        (["--progress=0"], False),
        (["--progress=false", "--progress=true"], True),  # the last one wins
    ],
)
def test_boolean_flags_are_NAME_and_NAME_equals_a_truth_value(argv, expected):
    assert _argparse(EvalOptions, argv).progress is expected
    assert _argparse(PredictOptions, ["--tta_flip=1"]).segment.tta_flip is True
