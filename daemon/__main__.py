"""``python -m lowkey_daemon``: the same as ``lowkey daemon``."""

import sys

from lowkey_daemon.cli import main

sys.exit(main())
