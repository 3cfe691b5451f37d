"""``python -m unet_jax.predict [options] IMAGES``: see :mod:`unet_jax.deploy.predict`."""

import sys

from unet_jax.deploy.predict import main

sys.exit(main())
