"""The compatibility modules: version checks that fail at import with one line."""

import subprocess
import sys

import pytest

from gdaemon.compat import require, version_tuple


@pytest.mark.parametrize("text, expected", [
    ("22.10.2", (22, 10, 2)), ("0.10.1", (0, 10, 1)), ("27", (27,)),
    ("26.9.0rc1", (26, 9, 0)), ("1.6.dev0", (1, 6)), ("3.0a2", (3, 0)),
])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected


def test_require_accepts_the_installed_version_in_range():
    from importlib import metadata
    assert require("gevent", "0.1", "999", "testing") == metadata.version("gevent")


@pytest.mark.parametrize("lowest, below", [("999", "1000"), ("0.1", "1")])
def test_require_refuses_a_version_out_of_range_in_one_line(lowest, below):
    from importlib import metadata
    installed = metadata.version("gevent")
    with pytest.raises(ImportError) as info:
        require("gevent", lowest, below, "its private hub API")
    message = str(info.value)
    assert "\n" not in message
    assert "gevent %s" % installed in message
    assert "gevent>=%s,<%s" % (lowest, below) in message


def test_require_names_a_missing_distribution():
    with pytest.raises(ImportError, match="no-such-dist>=1,<2 .* not installed"):
        require("no-such-dist", "1", "2", "nothing")


def test_an_unsupported_gevent_fails_gdaemon_import_with_one_line():
    # A real import in a fresh interpreter, with gevent claiming another
    # version: the message names it, no traceback of ours follows.
    code = ("import gevent; gevent.__version__ = '27.1.0'\n"
            "from gdaemon import Daemon\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: gdaemon does not support gevent 27.1.0"), proc.stderr


def _install_requires():
    import configparser
    import os
    import re
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(__file__), "..", "..", "setup.cfg"))
    bounds = {}
    for line in cfg["options"]["install_requires"].splitlines():
        match = re.match(r"\s*([\w-]+)>=([\w.]+)(?:,<([\w.]+))?", line)
        if match:
            bounds[match.group(1)] = (match.group(2), match.group(3))
    return bounds


def test_setup_cfg_bounds_are_the_ones_the_compat_modules_check():
    """The range pip installs is the range the import-time checks accept."""
    from gdaemon.compat import _gevent, geventwebsocket
    bounds = _install_requires()
    assert bounds["gevent"] == (_gevent.LOWEST, _gevent.BELOW)
    assert bounds["gevent-websocket"] == (geventwebsocket.LOWEST, geventwebsocket.BELOW)
