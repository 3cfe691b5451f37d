"""Paths and URLs: one parser; an unusable URL is one line and exit 2, never a local folder."""

import os
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from unet_jax import storage
from unet_jax.run.workdir import Workdir


def test_a_local_path_stays_a_pathlib_path(tmp_path):
    assert storage.path(str(tmp_path / "run")) == tmp_path / "run"
    assert isinstance(storage.path("runs/a"), pathlib.Path)
    assert not storage.is_url("runs/gs:/a") and storage.is_url("gs://b/a")


def test_a_gs_url_keeps_its_scheme_in_every_workdir_path():
    pytest.importorskip("gcsfs")
    layout = Workdir.of("gs://bucket/runs/a")
    assert str(layout.checkpoint_dir("best", 12)) == "gs://bucket/runs/a/best/12"
    assert str(layout.metrics) == "gs://bucket/runs/a/metrics.jsonl"
    assert str(layout.eval_dir("test", onnx=True)) == "gs://bucket/runs/a/eval/test_onnx"


def test_an_unknown_scheme_is_a_storage_error_naming_it():
    with pytest.raises(storage.StorageError, match=r"--workdir foo://b/run: unknown .* foo://"):
        storage.path("foo://b/run", what="--workdir")


def test_a_missing_client_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs raises ImportError
    with pytest.raises(storage.StorageError, match=r"needs gcsfs: pip install 'unet-jax\[gcs\]'"):
        storage.path("gs://bucket/run", what="--workdir")


def _train(tmp_path, workdir, *, env=None):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "--config",
         str(REPO_ROOT / "unet_jax/configs/tiny.py"), "--workdir", workdir],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("workdir", "shadow", "expected"),
    [
        ("foo://bucket/run", False, "unknown storage scheme foo://"),
        ("gs://bucket/run", True, "needs gcsfs: pip install 'unet-jax[gcs]'"),
    ],
)
def test_train_with_an_unusable_url_exits_2_in_one_line_and_writes_nothing(
    tmp_path, workdir, shadow, expected
):
    env = None
    if shadow:  # a gcsfs that cannot be imported, as when the extra is not installed
        (tmp_path / "shadow").mkdir()
        (tmp_path / "shadow" / "gcsfs.py").write_text("raise ImportError('not installed')\n")
        env = {"PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{REPO_ROOT}"}
    result = _train(tmp_path, workdir, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["shadow"] if shadow else [])


@pytest.mark.parametrize("value", ["gs:/bucket/run", pathlib.Path("gs://bucket/run")])
def test_a_url_that_lost_a_slash_is_refused_not_made_a_local_folder(value):
    # pathlib.Path("gs://b") is "gs:/b": a URL that went through pathlib by mistake.
    with pytest.raises(storage.StorageError, match=r"write the URL as gs://"):
        Workdir.of(value)
