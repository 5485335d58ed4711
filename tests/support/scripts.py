"""The one way tests write a daemon script.

:func:`write_script` writes an exec script into a test's work directory: the
:data:`PRELUDE` (gevent monkey-patched first, as users do; the common imports;
``HERE``, the script's directory; :class:`EchoDaemon`) followed by the test's
own ``body``, dedented.  The body builds its daemon and calls ``init()``::

    path = write_script(workdir, '''
        EchoDaemon({"description": "Nice Daemon", "niceness": 5}).init()
    ''')
    proc = spawn([sys.executable, path, "-f"])

:func:`echo_daemon` is the body most tests need.  Worker tests build on
both through :func:`support.workers.write_daemon`, which adds the worker
classes and an ``install(daemon)`` function.
"""

import os
import textwrap

#: The first lines of a patched script (``patched=False`` leaves them out).
PATCH = """\
from gevent import monkey
monkey.patch_all()

"""

#: What every script starts with, after :data:`PATCH`.
PRELUDE = '''\
import json
import os
import sys
import time

import gevent

import gdaemon
from gdaemon import Daemon, GreenletWorker, RpcError, Worker, exposed

HERE = os.path.dirname(os.path.abspath(__file__))


class EchoDaemon(Daemon):
    """``examples.echo``, as gdaemon-echo has it; subclasses call ``super().setup()``."""

    def setup(self):
        @self.rpc.method("examples.echo", description="I'm here to reply your data",
                         params=[("message", str)], returns=str)
        def echo(message):
            return message

'''


def write_script(workdir, body, patched=True, name="mydaemon.py"):
    """Write :data:`PRELUDE` and ``body`` (dedented) to ``workdir/name``; return the path.

    :param patched: start with ``gevent.monkey.patch_all()`` as users do
        (``False``: the same script unpatched).
    """
    source = (PATCH if patched else "") + PRELUDE + "\n" + textwrap.dedent(body).lstrip("\n")
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(source)
    return path


def echo_daemon(config):
    """The body of a script serving ``examples.echo`` with ``config``.

    :param config: a dict, or Python source for one (``'{"socketmode": 0o660}'``).
    """
    if not isinstance(config, str):
        config = repr(config)
    return "EchoDaemon(%s).init()\n" % config
