"""The range of gevent versions gdaemon supports (shared by the gevent modules here)."""

import gevent

from . import require

#: The oldest gevent tested (``.ci/run`` runs the suite against it).
LOWEST = "26.5.0"
#: The first gevent release not known to work: its next major version.
BELOW = "27"

VERSION = require("gevent", LOWEST, BELOW, "private hub, server and pywsgi APIs",
                  installed=gevent.__version__)
