"""``python -m builder`` runs the tfimg command line."""

import sys

from .cli import main

sys.exit(main())
