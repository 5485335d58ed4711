"""examples/copy_daemon.py, comodojo's CopyDaemon, works as README.rst (Writing a daemon) documents it."""

import os
import signal
import sys

from support import gone, wait_until

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "copy_daemon.py")


def read(path):
    with open(path) as f:
        return f.read()


def test_copy_daemon(spawn, workdir):
    with open(os.path.join(workdir, "test.txt"), "w") as f:
        f.write("hello handyman\n")
    proc = spawn([sys.executable, os.path.abspath(EXAMPLE), "-f"])
    first = os.path.join(workdir, "copy_test.txt")
    second = os.path.join(workdir, "copy_test_2.txt")
    # The first loop runs at once.
    wait_until(lambda: os.path.exists(first) and read(first) == "hello handyman\n", 10,
               message="copy_test.txt")
    info = proc.result("worker.info", ["handyman"])
    assert info["kind"] == "process" and info["looptime"] == 10 and info["forever"] is True
    assert not os.path.exists(second)

    assert proc.result("handyman.changename") is True
    wait_until(lambda: os.path.exists(second) and read(second) == "hello handyman\n", 5,
               message="copy_test_2.txt")
    assert proc.result("worker.call", ["handyman", "stats"]) == {"copies": 2, "target": "copy_test_2.txt"}
    assert proc.result("system.methodHelp", ["handyman.changename"]).startswith("Make the handyman")

    # forever: a killed handyman comes back, copying to copy_test.txt again.
    os.kill(info["pid"], signal.SIGKILL)
    wait_until(lambda: proc.result("worker.info", ["handyman"])["pid"] not in (None, info["pid"])
               and proc.result("worker.info", ["handyman"])["status"] == 1, 10, message="respawn")
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert gone(info["pid"])
    assert "handyman leaving after" in proc.output()
