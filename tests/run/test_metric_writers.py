"""metrics.jsonl survives interrupted writes: a partial last line is dropped, never fatal."""

import json

import pytest

from unet_jax.run.metric_writers import METRICS_FILE, MetricsFileError, MetricWriter, read_metrics


def _write_log(workdir, *, last_line: str) -> None:
    lines = [json.dumps({"step": s, "split": "train", "loss": 1.0 / s}) for s in (1, 2, 3)]
    (workdir / METRICS_FILE).write_text("\n".join(lines) + "\n" + last_line)


def test_read_metrics_skips_a_truncated_last_line_with_a_warning(tmp_path):
    _write_log(tmp_path, last_line='{"step": 4, "split": "tr')
    with pytest.warns(UserWarning, match=rf"{METRICS_FILE}:4: dropping a partial last line"):
        records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]


def test_resume_repairs_a_truncated_last_line_atomically(tmp_path):
    _write_log(tmp_path, last_line='{"step": 4, "split": "train", "lo')
    with pytest.warns(UserWarning, match="partial last line"):
        writer = MetricWriter(tmp_path, enabled=True, resume_step=2)
    writer.write(3, "train", {"loss": 0.25})
    writer.close()
    text = (tmp_path / METRICS_FILE).read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["step"] for line in text.splitlines()] == [1, 2, 3]
    # The rewrite went through a temporary file that is gone afterwards.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [METRICS_FILE]


def test_a_bad_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    (tmp_path / METRICS_FILE).write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(MetricsFileError, match=rf"{METRICS_FILE}:2: not a metrics record"):
        read_metrics(tmp_path)
