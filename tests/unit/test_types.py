"""The package is typed (issue 18): it ships ``py.typed``, its public names are
typed for a user's type checker, and the annotations cost nothing at run time."""

import configparser
import os
import re
import subprocess
import sys
import textwrap

import pytest

import gdaemon

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_py_typed_ships_with_the_package():
    package = os.path.dirname(gdaemon.__file__)
    assert os.path.isfile(os.path.join(package, "py.typed"))
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    data = [item.strip() for item in setup["options.package_data"]["gdaemon"].split(",")]
    assert "py.typed" in data


def test_the_client_and_the_package_start_without_typing():
    # The annotations of gdaemon, gdaemon.errors and gdaemon.client are read by
    # type checkers only: gdaemon-ctl and clients do not pay for ``typing``.
    code = "import sys, gdaemon, gdaemon.errors, gdaemon.client; print('typing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert out.strip() == "False"


USER_CODE = """\
from gdaemon import Daemon, ExecWorker, Worker, exposed
from gdaemon.client import Client


class Echo(Worker):
    @exposed
    def ping(self) -> str:
        return "pong"

    def loop(self) -> None:
        pass


daemon = Daemon({"description": "typed"})
daemon.workers.install(Echo("echo"), looptime="fast")        # line 15: looptime is a float
daemon.workers.install(ExecWorker("cmd", ["true"]), maxloops=1.5)  # line 16: maxloops is an int
daemon.stop(exitcode="bad")                                   # line 17: exitcode is an int
Client("unix://daemon.sock", timeout="5")                      # line 18: timeout is a float
reveal_type(Echo("e").ping())
reveal_type(Client("unix://x").subscribe("worker.*"))
"""


def test_a_type_checker_sees_the_public_api(tmp_path):
    api = pytest.importorskip("mypy.api", reason="mypy is in the check extra (.ci/run installs it)")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(USER_CODE))
    stdout, stderr, _status = api.run([str(script), "--cache-dir", str(tmp_path / "cache"),
                                       "--no-error-summary"])
    errors = {int(line.split(":")[1]) for line in stdout.splitlines() if ": error:" in line}
    assert errors == {15, 16, 17, 18}, stdout + stderr
    # (mypy versions spell builtins with or without their module)
    assert re.search(r'Revealed type is "(builtins\.)?str"', stdout), stdout  # exposed keeps the method's type
    assert re.search(r"Iterator\[(builtins\.)?dict\[(builtins\.)?str, Any\]\]", stdout), stdout
