"""``python -m unet_jax.export --workdir DIR --out FILE``: see :mod:`unet_jax.deploy.export`.

The command hands the data set builders (for ``--int8`` calibration) to the library, as
train.py and eval.py do: they live in the source checkout's ``datasets/`` folder, never
installed (it would shadow Hugging Face ``datasets``), so they are found from this file.
"""

import pathlib
import sys

from unet_jax.deploy.export import main


def _repository_builders():
    """``datasets.prepare_dataset`` of the source checkout this package runs from, or None."""
    root = pathlib.Path(__file__).resolve().parents[2]
    if not (root / "datasets" / "__init__.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import datasets

    return datasets.prepare_dataset


sys.exit(main(prepare_fn=_repository_builders()))
