"""train.py's default XLA flags: set only without XLA_FLAGS, same loss curve."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO_ROOT
from tests.model.test_fast_paths import _train_losses
from unet_jax.train import xla_flags


def test_default_flags_only_when_xla_flags_is_unset():
    environ = {}
    assert xla_flags.set_default_training_flags(environ)
    assert environ == {"XLA_FLAGS": xla_flags.CPU_TRAINING_XLA_FLAGS}
    for user_value in ("", "--xla_cpu_use_onednn=true"):
        environ = {"XLA_FLAGS": user_value}
        assert not xla_flags.set_default_training_flags(environ)
        assert environ == {"XLA_FLAGS": user_value}


def _run(code: str, xla_flags_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if xla_flags_value is not None:
        env["XLA_FLAGS"] = xla_flags_value
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_train_py_sets_them_on_import_unless_set():
    code = "import os, runpy; runpy.run_path('train.py'); print(os.environ.get('XLA_FLAGS'))"
    assert _run(code, None) == xla_flags.CPU_TRAINING_XLA_FLAGS
    assert _run(code, "--xla_cpu_use_onednn=true") == "--xla_cpu_use_onednn=true"


def test_training_under_the_default_flags_follows_the_same_loss_curve():
    # The tests run XLA at optimisation level 0 (tests/conftest.py); both runs here do.
    steps = 20
    code = (
        "import json; from tests.model.test_fast_paths import _train_losses; "
        f"print(json.dumps(_train_losses('float32', {steps})[0].tolist()))"
    )
    o0 = "--xla_backend_optimization_level=0"
    flagged = np.array(json.loads(_run(code, f"{xla_flags.CPU_TRAINING_XLA_FLAGS} {o0}")))
    expected, _ = _train_losses("float32", steps)
    assert expected[-1] < 0.5 * expected[0], expected  # it learns
    np.testing.assert_allclose(flagged, expected, rtol=2e-4)
