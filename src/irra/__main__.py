"""``python -m irra`` runs the command line."""

import sys

from irra.cli import main

sys.exit(main())
