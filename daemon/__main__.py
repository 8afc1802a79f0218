"""``python -m daemon``: the same as ``lowkey daemon``."""

import sys

from daemon.cli import main

sys.exit(main())
