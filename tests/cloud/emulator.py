"""The Cloud Storage emulator of the tests: ``python -m tests.cloud.emulator PORT DATA_DIR``.

gcp-storage-emulator, with objects kept on disk in DATA_DIR (so a restarted emulator still
has them) and one gap filled: its media downloads lack the ``x-goog-generation`` header
that Cloud Storage sends, without which TensorStore (orbax's checkpoint writer) fails with
"Malformed StorageGeneration" when it reads back an OCDBT manifest.
"""

import sys

BUCKET = "bucket"


def _download_with_generation(request, response, storage, *args, **kwargs):
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except Exception:  # noqa: BLE001 - a missing object: the emulator answers 404 itself
        obj = None
    if obj is not None:
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
    return _download(request, response, storage, *args, **kwargs)


def _download(*args, **kwargs):
    """The emulator's own download handler (replaced in `main`)."""
    raise RuntimeError("main() sets this")


def main(port: int, data_dir: str) -> None:
    global _download
    from gcp_storage_emulator import server  # the test extra's package
    from gcp_storage_emulator.handlers import objects

    _download = objects.download
    objects.download = _download_with_generation  # objects.get(alt=media) calls it too
    for _, methods in server.HANDLERS:
        for method, handler in methods.items():
            if handler is _download:
                methods[method] = _download_with_generation
    emulator = server.create_server(
        "localhost", port, in_memory=False, default_bucket=BUCKET, data_dir=data_dir
    )
    emulator.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
