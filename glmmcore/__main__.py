"""``python -m glmmcore``: the ``glmm`` command."""

import sys

from .cli import main

sys.exit(main())
