"""The workdir's files in a bucket (the emulator), without training: fast."""

import json

import pytest

from tests.cloud.emulator import BUCKET
from unet_jax import cli, storage
from unet_jax.run import checkpointing, metric_writers
from unet_jax.run.workdir import Workdir, finished_steps


def test_metrics_reach_the_bucket_and_a_resume_drops_the_later_lines(emulator, monkeypatch):
    workdir = f"gs://{BUCKET}/metrics_run"
    monkeypatch.setattr(metric_writers, "SYNC_EVERY_S", 0.0)  # copy after every write
    writer = metric_writers.MetricWriter(workdir, enabled=True)
    for step in (1, 2, 3):
        writer.write(step, "train", {"loss": 1.0 / step})
        steps = [r["step"] for r in metric_writers.read_metrics(workdir)]
        assert steps == list(range(1, step + 1))  # in the bucket after each write
    writer.close()
    events = emulator.objects("metrics_run/tensorboard")
    assert len(events) == 1 and events[0].startswith("events.out.tfevents")

    resumed = metric_writers.MetricWriter(workdir, enabled=True, resume_step=2)
    resumed.write(3, "train", {"loss": 0.25})
    resumed.close()
    records = metric_writers.read_metrics(workdir)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 0.5), (3, 0.25)]


def test_a_save_without_its_commit_file_is_not_a_step_and_is_removed(emulator):
    layout = Workdir.of(f"gs://{BUCKET}/interrupted")
    for step, done in ((2, True), (3, False)):
        state = layout.checkpoint_dir("latest", step) / "state"
        state.mkdir(parents=True, exist_ok=True)
        (state / "data").write_bytes(b"x" * 1000)
        if done:
            (layout.checkpoint_dir("latest", step) / "commit_success.txt").write_text("ok")
    assert finished_steps(layout.checkpoints) == [2]
    removed = checkpointing.remove_interrupted_saves(layout.checkpoints)
    assert removed == ["checkpoints/3 (0.0 MB)"]
    assert emulator.objects("interrupted") == [
        "checkpoints/2/commit_success.txt",
        "checkpoints/2/state/data",
    ]


def test_run_history_is_appended_in_a_bucket(emulator):
    from unet_jax.configs import tiny
    from unet_jax.run import info

    workdir = f"gs://{BUCKET}/history"
    info.write(workdir, tiny.get_config(), extra={"n": 1})
    info.write(workdir, tiny.get_config(), extra={"n": 2})
    lines = storage.path(f"{workdir}/run_history.jsonl").read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2]


def test_an_unreachable_bucket_is_exit_4_with_one_line():
    gcsfs_retry = pytest.importorskip("gcsfs.retry")
    lost = gcsfs_retry.HttpError({"code": 503, "message": "Service Unavailable"})
    try:
        raise RuntimeError("save failed") from lost
    except RuntimeError as e:
        chained = e
    for error in (lost, chained):
        assert cli.exit_code(error) == cli.EXIT_CHECKPOINT
        assert "cloud storage could not be reached" in cli.error_message(error)
    # A refused connection elsewhere (a multi-host coordinator) is not about storage.
    assert cli.exit_code(ConnectionRefusedError("coordinator")) == cli.EXIT_UNEXPECTED


def test_bucket_data_is_copied_once_to_the_local_cache(emulator, tmp_path, capsys):
    import ml_collections

    from unet_jax.data import cloud_data

    for name in ("a.png", "sub/b.png"):
        storage.path(f"gs://{BUCKET}/cached/{name}").write_bytes(name.encode() * 10)
    config = ml_collections.ConfigDict(
        {"folder": f"gs://{BUCKET}/cached", "data_dir": str(tmp_path), "manual_dir": None}
    )
    local, copied = cloud_data.localize(config)
    assert copied and local.data_dir == str(tmp_path) and config.folder.startswith("gs://")
    folder = storage.path(local.folder)
    assert not storage.is_url(folder) and str(folder).startswith(emulator.env["UNET_JAX_CACHE"])
    assert (folder / "sub" / "b.png").read_bytes() == b"sub/b.png" * 10
    assert "(2 file(s) copied now)" in capsys.readouterr().out
    cloud_data.localize(config)  # a second run finds the files there
    assert "(0 file(s) copied now)" in capsys.readouterr().out
