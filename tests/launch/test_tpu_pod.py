"""jobs/tpu/train_pod.sh: its --dry-run commands one by one, and the commands it sends to the
workers run here by bash on two stand-in workers (a fake metadata server's answers)."""

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "jobs" / "tpu" / "train_pod.sh"
LOCATION = ["--zone=us-central2-b", "--project=proj"]
SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1", *LOCATION]


def _dry_run(*args: str) -> list[list[str]]:
    options = ["--name", "pod1", "--zone", "us-central2-b", "--project", "proj"]
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", *options, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def _command(argv: list[str]) -> str:
    (value,) = [a.removeprefix("--command=") for a in argv if a.startswith("--command=")]
    return value


TRAIN_ARGS = ["--config", "unet_jax/configs/demo.py", "--workdir", "gs://b/run 1", "--x=it's"]


def test_dry_run_prints_each_command_in_order():
    commands = _dry_run("--create", "v4-16", "--queued", "--spot", "--delete", "--", *TRAIN_ARGS)
    assert len(commands) == 8, commands
    create, describe, archive, scp, setup, start, follow, delete = commands
    qr = ["gcloud", "compute", "tpus", "queued-resources"]
    assert create == [
        *qr, "create", "pod1", "--node-id=pod1", *LOCATION, "--accelerator-type=v4-16",
        "--runtime-version=tpu-ubuntu2204-base", "--spot",
    ]  # fmt: skip
    assert describe == [*qr, "describe", "pod1", *LOCATION, "--format=value(state.state)"]
    assert archive[:6] == ["git", "-C", str(REPO_ROOT), "archive", "--format=tar.gz", "-o"]
    tarball = archive[6]
    assert tarball.endswith(".tar.gz") and archive[7:] == ["HEAD"]
    assert scp == [
        "gcloud", "compute", "tpus", "tpu-vm", "scp", tarball, "pod1:unet-jax.tar.gz",
        *LOCATION, "--worker=all",
    ]  # fmt: skip
    for step in (setup, start):
        assert step[:-1] == [*SSH, "--worker=all"]
    assert follow[:-1] == [*SSH, "--worker=0"]
    assert delete == [*qr, "delete", "pod1", *LOCATION, "--force", "--quiet"]
    # The README's set-up in the unpacked archive (the venv kept between launches).
    setup_command = _command(setup)
    assert "tar -xzf unet-jax.tar.gz -C unet-jax; cd unet-jax;" in setup_command
    assert "python3.11 -m venv .venv" in setup_command
    assert ".venv/bin/pip install -q -c constraints.txt -e '.[gcs]' 'jax[tpu]'" in setup_command
    # train.py detached on every worker, its arguments intact through two shells.
    words = shlex.split(_command(start).removesuffix("&"))
    log = words[words.index("jobs/tpu/on_worker.sh") + 1]
    assert words[:6] == ["cd", "unet-jax", "&&", "setsid", "nohup", "bash"]
    assert words[words.index(log) + 1 : words.index(">/dev/null")] == [
        ".venv/bin/python", "-u", "train.py", *TRAIN_ARGS,
    ]  # fmt: skip
    assert log.startswith("$HOME/unet-jax-logs/train-") and log.endswith(".log")
    assert shlex.split(_command(follow)) == [
        "bash",
        "unet-jax/jobs/tpu/on_worker.sh",
        "--follow",
        log,
    ]


def test_dry_run_plain_tpu_vm_without_create_or_delete():
    commands = _dry_run("--create", "v5litepod-16", "--", "--workdir=gs://b/r")
    assert commands[0] == [
        "gcloud", "compute", "tpus", "tpu-vm", "create", "pod1", *LOCATION,
        "--accelerator-type=v5litepod-16", "--version=tpu-ubuntu2204-base",
    ]  # fmt: skip
    assert commands[1][:4] == ["git", "-C", str(REPO_ROOT), "archive"]
    assert [c[4] for c in commands[2:]] == ["scp", "ssh", "ssh", "ssh"]
    assert len(_dry_run("--", "--workdir=gs://b/r")) == 5  # no create, no delete


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--", "--workdir", "/local/run"],
            "--workdir '/local/run': a TPU VM's workers share no disk",
        ),
        (["--", "--config", "c.py"], "--workdir '': a TPU VM's workers share no disk"),
        (["--run", "fit", "--", "--workdir=gs://b/r"], "--run fit: choose train, eval"),
        (["--frobnicate"], "unknown option --frobnicate"),
        (["--create", "--", "--workdir=gs://b/r"], "--create needs a value"),
    ],
    ids=["local-workdir", "no-workdir", "unknown-run", "unknown-option", "no-value"],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--name", "pod1", "--zone", "z", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1


def _worker(tmp_path: pathlib.Path, index: int) -> dict[str, str]:
    """A stand-in TPU VM worker: its HOME with the unpacked checkout and venv, its metadata."""
    home = tmp_path / f"worker{index}"
    checkout = home / "unet-jax"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    for name in ("jobs", "eval.py"):
        (checkout / name).symlink_to(REPO_ROOT / name)
    python = checkout / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    bin_dir = home / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"  # answers the two metadata keys on_worker.sh asks for
    curl.write_text(
        "#!/bin/sh\nfor a; do last=$a; done\ncase $last in\n"
        f"*/agent-worker-number) echo {index} ;;\n"
        "*/worker-network-endpoints) echo unknown:unknown:10.0.0.2,unknown:unknown:10.0.0.3 ;;\n"
        "*) exit 22 ;;\nesac\n"
    )
    curl.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPU_", "SLURM_", "UNET_JAX_"))}
    return dict(env, HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env['PATH']}")


def test_eval_started_on_every_worker_runs_on_worker_zero_only(tmp_path):
    commands = _dry_run("--run", "eval", "--", "--workdir", f"gs://b/{tmp_path.name}")
    start, follow = _command(commands[3]), _command(commands[4])
    assert start.startswith("cd unet-jax && JAX_PLATFORMS=cpu setsid nohup ")
    results = {}
    # A gcsfs that cannot be imported: worker 0's eval.py stops before any network traffic.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "gcsfs.py").write_text("raise ImportError('not installed')\n")
    for index in (0, 1):
        env = _worker(tmp_path, index)
        env["PYTHONPATH"] = os.pathsep.join([str(shadow), env.get("PYTHONPATH", "")])
        subprocess.run(["bash", "-c", start], cwd=env["HOME"], env=env, check=True, timeout=60)
        results[index] = subprocess.run(
            ["bash", "-c", follow], cwd=env["HOME"], env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    one = results[1]
    assert one.returncode == 0, one.stdout + one.stderr
    assert one.stdout.splitlines() == [
        f"worker 1 of 10.0.0.2,10.0.0.3: .venv/bin/python -u eval.py --workdir gs://b/{tmp_path.name}",
        "eval.py: process 1 of a multi-process launch; process 0 writes the outputs, "
        "nothing to do here",
    ]
    # Worker 0 evaluates: it opens the bucket's workdir, which needs gcsfs (exit 2).
    zero = results[0]
    assert zero.returncode == 2, zero.stdout + zero.stderr
    assert "nothing to do here" not in zero.stdout
    assert zero.stdout.splitlines()[-1].startswith("error: ")
    assert "needs gcsfs" in zero.stdout.splitlines()[-1]


def test_delete_happens_even_when_a_step_fails(tmp_path):
    # A stand-in gcloud that records its calls and fails the copy to the workers.
    gcloud = tmp_path / "gcloud"
    gcloud.write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\ncase "$*" in *" scp "*) exit 1 ;; esac\n'
    )
    gcloud.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
    result = subprocess.run(
        ["bash", str(SCRIPT), "--name", "p", "--zone", "z", "--delete", "--", "--workdir=gs://b/r"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split()[3] for c in calls] == ["scp", "delete"]
    assert calls[1] == "compute tpus tpu-vm delete p --zone=z --quiet"
    archive = calls[0].split()[4]
    assert archive.startswith(f"{tmp_path}/unet-jax-")  # made in TMPDIR for the copy,
    assert not pathlib.Path(archive).exists()  # and removed at the end
