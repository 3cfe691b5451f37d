"""Every failure a user met (issue 23), run as the user ran it: the real command in a
subprocess, its exit code, no traceback, a handful of lines naming the file or field.

The fast tests stop before any data is read. The slow ones share one tiny crop-trained
folder run (10 binary 48x64 images, 32x32 crops, 3 steps, a checkpoint every step) and
work on copies of it.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

MAX_FAILURE_LINES = 10


def run(*argv: str, env=None, prefix=(), preexec_fn=None, cwd=REPO_ROOT):
    """``python ARGV`` (optionally behind ``prefix``); (exit code, stdout and stderr)."""
    result = subprocess.run(
        [*prefix, sys.executable, *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        preexec_fn=preexec_fn,
        check=False,
    )
    return result.returncode, result.stdout


def assert_told(result, code: int, *named: str, max_lines: int = MAX_FAILURE_LINES) -> None:
    """Exit ``code``, no traceback, at most ``max_lines`` lines, naming each of ``named``."""
    returncode, output = result
    assert returncode == code, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert len(output.splitlines()) <= max_lines, output
    for text in named:
        assert text in output, output


# ----------------------------------------------------------------------------
# Bad input found before any data is read (fast).
# ----------------------------------------------------------------------------

TINY = ("train.py", "--config", "unet_jax/configs/tiny.py")


def test_workdir_that_is_a_file(tmp_path):
    target = tmp_path / "run"
    target.write_text("not a folder")
    assert_told(run(*TINY, f"--workdir={target}"), 2, f"workdir {target}: is a file")
    assert target.read_text() == "not a folder"
    inside = target / "sub"
    assert_told(run(*TINY, f"--workdir={inside}"), 2, f"is inside {target}, a file")


def _read_only_mount_works(folder: pathlib.Path) -> bool:
    probe = subprocess.run(
        [*_read_only(folder), "true"], capture_output=True, check=False, timeout=60
    )
    return probe.returncode == 0


def _read_only(folder: pathlib.Path) -> list[str]:
    """A command prefix that runs the command with ``folder`` mounted read-only."""
    script = f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


def test_workdir_on_a_read_only_filesystem(tmp_path):
    if shutil.which("unshare") is None or not _read_only_mount_works(tmp_path):
        pytest.skip("no user namespaces to mount a folder read-only")
    workdir = tmp_path / "run"
    result = run(*TINY, f"--workdir={workdir}", prefix=_read_only(tmp_path))
    assert_told(result, 2, f"workdir {workdir}: is on a read-only filesystem")


def test_workdir_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions are not enforced")
    assert_told(run(*TINY, f"--workdir={locked / 'run'}"), 2, "is not writable")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (None, "no such config file"),
        ("def get_config(:\n", "line 1: SyntaxError: invalid syntax"),
        ("def get_config():\n    return undefined_name\n", "line 2: NameError"),
        ("def get_config():\n    raise ValueError('bad value')\n", "line 2: ValueError: bad value"),
        ("x = 1\n", "defines no get_config()"),
    ],
    ids=["missing", "syntax", "name", "raises", "no_get_config"],
)
def test_config_file_that_cannot_be_loaded(tmp_path, content, named):
    config = tmp_path / "mine.py"
    if content is not None:
        config.write_text(content)
    result = run("train.py", "--config", str(config), f"--workdir={tmp_path / 'run'}")
    assert_told(result, 2, f"error: --config {config}: {named}", max_lines=1)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# A tiny crop-trained folder run and what users did to it (slow).
# ----------------------------------------------------------------------------


def make_folder(
    root: pathlib.Path,
    *,
    images: str = "images",
    masks: str = "masks",
    suffix: str = "",
    classes: int = 2,
    n: int = 10,
) -> list[str]:
    """``n`` 48x64 images with masks (binary 0/255, or ids 0..classes-1); their stems."""
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(classes)
    stems = []
    for i in range(n):
        mask = np.zeros((48, 64), np.uint8)
        mask[8:30, 4 + i : 40] = 255 if classes == 2 else 1
        if classes > 2:
            mask[36:, :20] = 2
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        image[mask > 0] //= 3
        Image.fromarray(image).save(root / images / f"scene{i}.png")
        Image.fromarray(mask).save(root / masks / f"scene{i}{suffix}.png")
        stems.append(f"scene{i}")
    return stems


def folder_args(folder: pathlib.Path, data_dir: pathlib.Path, *extra: str) -> list[str]:
    """The folder config at a test's size; ``image_size=32`` means 32x32 crops."""
    return [
        "train.py",
        "--config",
        "unet_jax/configs/folder.py",
        f"--config.folder={folder}",
        f"--config.data_dir={data_dir}",
        "--config.image_size=32",
        "--config.model.bridge_features=16",
        "--config.batch_size=2",
        "--config.eval_batch_size=2",
        "--config.checkpoint_every_steps=1",
        "--config.eval_every_steps=3",
        "--config.progress_bar=False",
        "--config.worker_count=0",
        *extra,
    ]


class Trained:
    def __init__(self, root: pathlib.Path) -> None:
        self.folder = root / "data"
        self.stems = make_folder(self.folder)
        self.data_dir = root / "tfds"
        self.workdir = root / "run"
        self.output = run(*self.args("--config.model.features=(4,8)", "--config.num_train_steps=3"))

    def args(self, *extra: str, workdir: pathlib.Path | None = None) -> list[str]:
        return folder_args(
            self.folder, self.data_dir, f"--workdir={workdir or self.workdir}", *extra
        )

    def copy(self, tmp_path: pathlib.Path) -> pathlib.Path:
        target = tmp_path / "run"
        shutil.copytree(self.workdir, target)
        return target

    def resume(self, workdir: pathlib.Path, *extra: str, steps: int = 4, **kwargs):
        """Resumes a copy to ``steps`` (the trained run has 3: 3 trains nothing)."""
        length = f"--config.num_train_steps={steps}"
        return run(
            *self.args("--config.model.features=(4,8)", length, *extra, workdir=workdir), **kwargs
        )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return Trained(tmp_path_factory.mktemp("trained"))


def _truncate(step_dir: pathlib.Path) -> None:
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.slow
def test_a_folder_run_is_quiet_and_takes_one_number_as_a_square(trained):
    returncode, output = trained.output
    assert returncode == 0, output[-4000:]
    for noise in ("Using custom data configuration", "Downloading and preparing", "WARNING"):
        assert noise not in output
    assert not re.search(r"^[IW]\d{4} ", output, flags=re.M), output  # absl log lines
    assert "images in images/, masks in masks/ (same names)" in output
    config = json.loads((trained.workdir / "config.json").read_text())
    assert config["image_size"] == [32, 32]


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_the_previous(trained, tmp_path):
    workdir = trained.copy(tmp_path)
    _truncate(workdir / "checkpoints" / "3")
    # To step 2, the fallback's own: it is restored, and nothing is left to train.
    result = trained.resume(workdir, steps=2)
    assert_told(result, 0, "moved it to 3.damaged-0", "Resuming from step 2")
    assert (workdir / "checkpoints" / "3.damaged-0").is_dir()


@pytest.mark.slow
def test_every_latest_checkpoint_truncated_names_the_intact_best(trained, tmp_path):
    workdir = trained.copy(tmp_path)
    for step in ("1", "2", "3"):
        _truncate(workdir / "checkpoints" / step)
    best = sorted((workdir / "best").iterdir())[-1]
    assert_told(
        trained.resume(workdir),
        4,
        "set aside as damaged: 3.damaged-0, 2.damaged-0, 1.damaged-0",
        f"best/{best.name} is intact",
        f"cp -r {best} {workdir / 'checkpoints' / best.name}",
    )


@pytest.mark.slow
def test_interrupted_save_is_removed_at_the_next_start(trained, tmp_path):
    workdir = trained.copy(tmp_path)
    best = sorted((workdir / "best").iterdir())[-1]
    stale = workdir / "best" / "5.orbax-checkpoint-tmp"
    shutil.copytree(best, stale)
    (stale / "_CHECKPOINT_METADATA").unlink()  # never finalised
    # To step 3, the run's own end: the start removes it, and nothing is left to train.
    assert_told(trained.resume(workdir, steps=3), 0, "Removed best/5.orbax-checkpoint-tmp")
    assert not stale.exists()


def _with_full_disk(checkpoints: pathlib.Path, room: int) -> list[str]:
    """A command prefix: ``checkpoints`` on a tmpfs holding its files and ``room`` bytes more."""
    used = sum(f.stat().st_size for f in checkpoints.rglob("*") if f.is_file())
    size = used + len(list(checkpoints.rglob("*"))) * 4096 + room  # tmpfs counts pages
    saved = checkpoints.with_name("checkpoints.saved")
    checkpoints.rename(saved)
    checkpoints.mkdir()
    script = (
        f'mount -t tmpfs -o size={size} tmpfs "{checkpoints}" && '
        f'cp -a "{saved}/." "{checkpoints}/" && exec "$@"'
    )
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


@pytest.mark.slow
def test_full_disk_while_saving_is_one_line(trained, tmp_path):
    if shutil.which("unshare") is None or not _read_only_mount_works(tmp_path):
        pytest.skip("no user namespaces to mount a small filesystem")
    workdir = trained.copy(tmp_path)
    prefix = _with_full_disk(workdir / "checkpoints", room=16_384)
    # To step 5: step 4 is saved (checkpoints every step) before its validation would be
    # due (every 3 steps and at the end), so the failing save is the first thing after one step.
    result = trained.resume(workdir, steps=5, prefix=prefix)
    assert_told(result, 4, "could not write checkpoint step 4", "(step 3) is intact")


@pytest.mark.slow
def test_resume_with_other_widths_says_which(trained, tmp_path):
    workdir = trained.copy(tmp_path)
    args = trained.args("--config.model.features=(8,16)", workdir=workdir)
    assert_told(
        run(*args),
        2,
        f"workdir {workdir} was trained with model.features=(4, 8); the config has "
        "model.features=(8, 16)",
        f"--config.init_from={workdir}",
    )


@pytest.mark.slow
def test_resume_on_another_folder_is_refused_naming_both(trained, tmp_path):
    workdir = trained.copy(tmp_path)
    other = tmp_path / "other"
    make_folder(other, classes=3)
    args = trained.args("--config.model.features=(4,8)", workdir=workdir)
    args = [a for a in args if not a.startswith("--config.folder=")] + [f"--config.folder={other}"]
    assert_told(
        run(*args),
        2,
        f"trained on folder='{trained.folder}'; the config has folder='{other}'",
        "--config.allow_new_data=True",
    )
    assert json.loads((workdir / "config.json").read_text())["folder"] == str(trained.folder)
    # Allowed on new data, the other class count is then the difference named.
    assert_told(
        run(*args, "--config.allow_new_data=True"),
        2,
        "was trained with 2 classes (background, foreground); the config has 3 classes "
        "(class0, class1, class2)",
    )


@pytest.mark.slow
def test_predict_and_load_print_nothing_of_orbax(trained, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    returncode, output = run(
        "-m", "unet_jax.predict", "--workdir", str(trained.workdir), str(image),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert returncode == 0, output
    assert "Metadata file does not exist" not in output and "WARNING" not in output
    code = f"import unet_jax; unet_jax.load({str(trained.workdir)!r})"
    returncode, output = run("-c", code)
    assert (returncode, output) == (0, "")


@pytest.mark.slow
def test_eval_reports_whole_images_by_file_name(trained, tmp_path):
    out = tmp_path / "eval"
    returncode, output = run(
        "eval.py", f"--workdir={trained.workdir}", "--checkpoint=latest", f"--out={out}"
    )
    assert returncode == 0, output[-4000:]
    _, prepared = trained.output
    test_count = int(re.search(r"test (\d+)\)", prepared).group(1))
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_examples"] == test_count
    assert report["num_tiles"] == 4 * test_count  # 48x64 in 32x32 tiles: 2 x 2
    page = (out / "report.html").read_text()
    rows = re.findall(r'<div class="name">([^<]*)</div>', page)
    assert len(rows) == test_count and set(rows) <= set(trained.stems)
    shown = re.findall(r'<div class="meta">(\d+)x(\d+)</div>', page)
    assert shown == [("48", "64")] * test_count  # whole images, not tiles
    assert (out / "report.html").stat().st_size < 40_000 * test_count


# ----------------------------------------------------------------------------
# The layouts users have: each is recognised and prepared (the folder command, a few
# seconds); the one named by options also trains 2 steps through train.py (slow).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "masks", "suffix", "found"),
    [
        ("images", "labels", "", "images in images/, masks in labels/ (same names)"),
        ("img", "ann", "", "images in img/, masks in ann/ (same names)"),
        (".", ".", "_mask", "masks beside the images in ./ (a mask's name adds '_mask')"),
    ],
    ids=["labels", "img_ann", "beside_suffix"],
)
def test_layout_is_recognised_and_prepared(tmp_path, images, masks, suffix, found):
    folder = tmp_path / "data"
    make_folder(folder, images=images, masks=masks, suffix=suffix)
    returncode, output = run("-m", "datasets.folder", str(folder), f"--data_dir={tmp_path}")
    assert returncode == 0, output[-4000:]
    assert found in output
    assert "train 6, validation 2, test 2" in output


@pytest.mark.slow
def test_layout_named_by_options_trains(tmp_path):
    folder = tmp_path / "data"
    make_folder(folder, images="photos", masks="truth", suffix="_m")
    args = folder_args(
        folder,
        tmp_path / "tfds",
        f"--workdir={tmp_path / 'run'}",
        "--config.model.features=(4,8)",
        "--config.num_train_steps=2",
        "--config.eval_every_steps=2",
        "--config.folder_images=photos",
        "--config.folder_masks=truth",
        "--config.folder_mask_suffix=_m",
    )
    returncode, output = run(*args)
    assert returncode == 0, output[-4000:]
    assert "images in photos/, masks in truth/ (a mask's name adds '_m')" in output
    assert "train 6, validation 2, test 2" in output


def test_ambiguous_layout_lists_what_it_found_and_the_option(tmp_path):
    folder = tmp_path / "data"
    make_folder(folder, masks="masks")
    make_folder(folder, masks="labels")
    args = folder_args(folder, tmp_path / "tfds", f"--workdir={tmp_path / 'run'}")
    assert_told(
        run(*args),
        2,
        f"{folder}: several mask folders (masks/, labels/); pick one with "
        "--config.folder_masks=NAME",
    )
