"""The Python blocks of docs/EVALUATION.md run as documented, against a tiny trained run.

Each block follows a ``<!-- test: NAME -->`` marker. The reuse example runs in this
process; the export example in a fresh interpreter where ``import unet_jax`` fails.
"""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.evaluation.test_eval import _reference_predictions, tiny_run
from unet_jax.deploy import export
from unet_jax.run.classes_file import read_run_classes
from unet_jax.run.loading import load_run, make_apply_fn

DOC = REPO_ROOT / "docs" / "EVALUATION.md"
PLACEHOLDER_WORKDIR = '"runs/demo"'


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_run(tmp_path_factory)


def doc_block(name: str, doc=DOC) -> str:
    """The fenced python block right after ``<!-- test: name -->`` in ``doc``."""
    pattern = rf"<!-- test: {re.escape(name)} -->\s*```python\n(.*?)```"
    found = re.findall(pattern, doc.read_text(), flags=re.S)
    assert len(found) == 1, f"expected one block marked {name!r} in {doc}"
    return found[0]


def test_readme_reuse_example(tiny, tmp_path, monkeypatch):
    # Exactly as written, where the demo run is runs/demo (the tiny run: 13 classes too).
    code = doc_block("readme-reuse", REPO_ROOT / "README.md")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(tiny.workdir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README", "exec"), namespace)
    run = load_run(tiny.workdir, checkpoint="best")
    expected = np.asarray(run.model.apply(run.variables, namespace["images"], train=False))
    assert namespace["logits"].shape == (2, 128, 128, 13)  # as its comment says
    assert namespace["labels"].shape == namespace["images"].shape[:3]
    np.testing.assert_array_equal(namespace["labels"], expected.argmax(-1))


def test_reuse_example(tiny, tmp_path, monkeypatch):
    code = doc_block("reuse-example")
    assert code.count(PLACEHOLDER_WORKDIR) == 3  # load(), read_run_classes() and Segmenter.load()
    code = code.replace(PLACEHOLDER_WORKDIR, repr(str(tiny.workdir)))
    monkeypatch.chdir(tmp_path)
    frame = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(frame).save("frame.png")
    namespace: dict = {}
    exec(compile(code, f"{DOC}:reuse-example", "exec"), namespace)

    run = load_run(tiny.workdir, checkpoint="best")
    small = np.asarray(Image.fromarray(frame).resize((128, 128), Image.Resampling.BILINEAR))
    logits = np.asarray(run.model.apply(run.variables, small[None], train=False))
    np.testing.assert_array_equal(namespace["labels"], logits[0].argmax(-1))
    np.testing.assert_array_equal(
        np.asarray(Image.open("frame_classes.png")),
        read_run_classes(tiny.workdir).colorize(namespace["labels"]),
    )
    # The any-size part: flip TTA on the 50x70 frame, reflect-padded to 52x72 and cropped.
    assert namespace["full_labels"].shape == (1, 50, 70)
    np.testing.assert_allclose(namespace["full_probs"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(
        namespace["full_labels"], _reference_predictions(run, frame[None], tta=True)
    )


def test_export_example_runs_without_unet_jax(tiny, tmp_path):
    pytest.importorskip("flatbuffers", reason="jax.export serialisation needs flatbuffers")
    export.export_run(tiny.workdir, tmp_path / "model.jaxexport")
    script = (
        "import sys\n"
        "sys.modules['unet_jax'] = None  # the consumer cannot import this project\n"
        + doc_block("export-example")
        + "\nnp.save('labels.npy', labels)\nprint(json.dumps(present))\n"
    )
    (tmp_path / "consumer.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "consumer.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run = load_run(tiny.workdir)
    zeros = np.zeros((2, 256, 320, 3), np.uint8)
    expected = np.asarray(make_apply_fn(run.model)(run.variables, zeros)).argmax(-1)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), expected)
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert names and set(names) <= set(
        json.loads((tmp_path / "model.jaxexport.json").read_text())["class_names"]
    )
