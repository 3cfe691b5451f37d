"""``python -m unet_jax.export --workdir DIR --out FILE``: see :mod:`unet_jax.deploy.export`."""

import sys

from unet_jax.deploy.export import main

sys.exit(main())
