"""``python -m napari_gapcam.cli``: the ``gapcam`` command."""

import sys

from .command import main

sys.exit(main())
