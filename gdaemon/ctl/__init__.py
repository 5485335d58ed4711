"""``gdaemon-ctl``: the command-line client and interactive shell (docs/reference/ctl.rst).

The package only parses command lines and formats results; every byte on
the wire goes through :class:`gdaemon.client.Client`.

- :mod:`~gdaemon.ctl.cli`: options, the usage text, :func:`main`;
- :mod:`~gdaemon.ctl.commands`: the command table and one handler per command;
- :mod:`~gdaemon.ctl.format`: tables, durations, sizes, worker states for people;
- :mod:`~gdaemon.ctl.shell`: the interactive shell.

Exit status: 0 success, 1 the daemon answered an error (``error CODE:
MESSAGE`` on stderr), 2 usage error, 3 the daemon cannot be reached (the
message names the address).  In the shell, the status of the last command.
"""

from .cli import USAGE, main

__all__ = ["main", "USAGE"]
