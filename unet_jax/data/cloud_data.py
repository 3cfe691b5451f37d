"""Data in a bucket (``config.data_dir``/``manual_dir``/``folder`` = ``gs://...``).

grain reads ArrayRecord files through local file handles only, so a prepared data set
cannot be read from a bucket. Each process copies what the bucket holds to its local cache
(`unet_jax.storage.local_cache`) and prepares there whatever is not prepared yet; the
bucket is only read. See docs/CLOUD_STORAGE.md.
"""

from __future__ import annotations

import jax
import ml_collections

from unet_jax import storage

DATA_PATH_FIELDS = ("data_dir", "manual_dir", "folder")


def localize(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, bool]:
    """The config with its bucket data paths replaced by local copies.

    Args:
      config: the run config.

    Returns:
      ``(config, copied)``: a copy whose URL fields name local folders, and True, or the
      same config and False when no field is a URL.

    Raises:
      unet_jax.storage.StorageError: an unknown scheme or a missing client package.
    """
    fields = [f for f in DATA_PATH_FIELDS if storage.is_url(config.get(f))]
    if not fields:
        return config, False
    local = ml_collections.ConfigDict(config.to_dict())
    for field in fields:
        url = storage.path(config[field], what=f"config.{field}")
        target = storage.local_cache(url, kind=field)
        copied = storage.download(url, target) if url.exists() else 0
        target.mkdir(parents=True, exist_ok=True)
        if jax.process_index() == 0:
            print(
                f"config.{field}={url}: grain reads local files only, so each host works on a "
                f"copy in {target} ({copied} file(s) copied now)"
            )
        local[field] = str(target)
    return local, True
