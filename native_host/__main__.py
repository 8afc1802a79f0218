"""``python -m native_host``: the same as ``lowkey-native-host`` (the Windows wrapper runs this)."""

import sys

from native_host.host import main

sys.exit(main())
