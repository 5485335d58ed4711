"""``python -m gdaemon.ctl``: the same as ``gdaemon-ctl``."""

import sys

from .cli import main

sys.exit(main())
