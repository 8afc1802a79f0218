"""``python -m lowkey_native_host``: the same as ``lowkey-native-host`` (the Windows wrapper runs
this)."""

import sys

from lowkey_native_host.host import main

sys.exit(main())
