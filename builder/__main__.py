"""``python -m builder`` runs the tfimg command line."""

import sys

from builder.cli import main

sys.exit(main())
