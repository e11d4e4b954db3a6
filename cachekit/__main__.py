"""``python -m cachekit``: the ``cachekit`` command (see :mod:`cachekit.cli`)."""

import sys

from cachekit.cli import main

sys.exit(main())
