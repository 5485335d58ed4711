"""Fixtures shared by the whole suite: temporary directories and daemons."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support import DaemonProcess, command, kill_pidfile_daemon, short_tmpdir  # noqa: E402


def _fresh_workdir():
    path = short_tmpdir()
    yield path
    kill_pidfile_daemon(path)
    shutil.rmtree(path, ignore_errors=True)


def _spawner(workdir):
    started = []

    def _spawn(argv, wait=True, env=None, address=None, cwd=None):
        proc = DaemonProcess(argv, cwd or workdir, env=env, address=address)
        started.append(proc)
        return proc.start(wait=wait)

    yield _spawn
    for proc in started:
        proc.stop()


@pytest.fixture
def workdir():
    """A short temporary directory (unix socket paths must stay under 108 bytes).

    Any daemon started there with ``-d`` is killed at teardown.
    """
    yield from _fresh_workdir()


@pytest.fixture
def spawn(workdir):
    """``spawn(argv, **kw)`` starts a daemon in ``workdir``; all are stopped at teardown."""
    yield from _spawner(workdir)


@pytest.fixture(scope="module")
def module_workdir():
    """:func:`workdir` for the daemons a whole test module shares."""
    yield from _fresh_workdir()


@pytest.fixture(scope="module")
def module_spawn(module_workdir):
    """:func:`spawn` in ``module_workdir``: its daemons are stopped after the module's last test."""
    yield from _spawner(module_workdir)


@pytest.fixture
def echo(spawn):
    """A foreground ``gdaemon-echo -f`` serving on ``unix://<workdir>/daemon.sock``."""
    return spawn([command("gdaemon-echo"), "-f"])
