"""A local Cloud Storage emulator for the gs:// tests (skipped without the test packages).

One emulator process per test session and xdist worker, on a free port, with its objects
on disk so that a test can stop it and start it again. gcsfs finds it through
``STORAGE_EMULATOR_HOST``, orbax's TensorStore through ``TENSORSTORE_GCS_HTTP_URL``.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO_ROOT

# gcsfs reads this when imported: its bucket-type probe needs a control-plane API (gRPC)
# that the emulator does not have, and would retry it for minutes.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
from tests.cloud.emulator import BUCKET


class Emulator:
    """The emulator process and the environment that points the clients at it."""

    def __init__(self, root: pathlib.Path) -> None:
        import portpicker

        self.port = portpicker.pick_unused_port()
        self.store = root / "objects"
        self.cache = root / "cache"
        url = f"http://localhost:{self.port}"
        self.env = {
            "STORAGE_EMULATOR_HOST": url,
            "TENSORSTORE_GCS_HTTP_URL": url,
            # TensorStore asks for no credentials with this (else it waits for a metadata
            # server); gcsfs goes anonymous with STORAGE_EMULATOR_HOST.
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "UNET_JAX_CACHE": str(self.cache),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cloud.emulator", str(self.port), str(self.store)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{self.port}/", timeout=1)
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the Cloud Storage emulator did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def fs(self):
        """A gcsfs filesystem on the emulator (not cached: it may have been restarted)."""
        import gcsfs

        return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)

    def objects(self, prefix: str) -> list[str]:
        """Object names below ``gs://bucket/<prefix>``, relative to it."""
        root = f"{BUCKET}/{prefix}"
        return sorted(p[len(root) + 1 :] for p in self.fs().find(root))


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    pytest.importorskip("gcp_storage_emulator", reason="the test extra's Cloud Storage emulator")
    pytest.importorskip("gcsfs", reason="the gcs extra (pip install 'unet-jax[gcs]')")
    server = Emulator(tmp_path_factory.mktemp("gcs"))
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # for the clients of this process too
    server.start()
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
