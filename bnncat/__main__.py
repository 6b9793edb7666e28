"""Run the command line: ``python -m bnncat``."""

import sys

from bnncat.cli import main

sys.exit(main())
