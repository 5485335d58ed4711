"""Run the tutorial's shell sessions and check their output (part of .ci/run).

Every ``.. code-block:: console`` of ``docs/tutorial.rst`` is a session:
each ``$ COMMAND`` line runs (bash, in a temporary directory holding the
files of ``docs/tutorial/``, with this Python's ``bin`` first on ``PATH``),
must exit 0, and its output must match the lines shown after it, ``...``
matching anything and a run of blanks any blanks (doctest's ELLIPSIS and
NORMALIZE_WHITESPACE: ``gdaemon-ctl workers`` sizes its columns to the
pids).  Whatever happens, every daemon the tutorial started is stopped at
the end.

Usage: python docs/run_tutorial.py   (exit 0 when every command matched)
"""

import doctest
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONSOLE = re.compile(r"^\.\. code-block:: console\n\n((?:    .*\n|\n)+)", re.M)


FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _tail(path, lines=20):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(none)\n"


def sessions(path):
    """``[[(command, expected_output), ...], ...]``, one list per console block."""
    with open(path) as f:
        text = f.read()
    found = []
    for block in CONSOLE.finditer(text):
        steps = []
        for line in block.group(1).rstrip("\n").splitlines():
            line = line[4:]
            if line.startswith("$ "):
                steps.append([line[2:], []])
            elif steps:
                steps[-1][1].append(line)
        found.append([(command, "\n".join(out).strip("\n") + "\n" if out else "") for command, out in steps])
    return found


def main():
    checker = doctest.OutputChecker()
    workdir = tempfile.mkdtemp(prefix="gdaemon-tutorial-")
    for name in glob.glob(os.path.join(HERE, "tutorial", "*.py")):
        shutil.copy(name, workdir)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("GDAEMON_SOCKET", None)
    env.pop("GDAEMON_TOKEN", None)
    failures = ran = 0
    try:
        for session in sessions(os.path.join(HERE, "tutorial.rst")):
            for command, want in session:
                ran += 1
                try:
                    proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, timeout=60)
                    got, status = proc.stdout, proc.returncode
                except subprocess.TimeoutExpired as exc:
                    got, status = (exc.output or b"").decode(errors="replace"), "timed out after 60 s"
                if status != 0 or not checker.check_output(want, got, FLAGS):
                    failures += 1
                    print("FAILED: $ %s (exit %s)\n--- expected ---\n%s--- got ---\n%s--- daemon.log ---\n%s"
                          % (command, status, want, got, _tail(os.path.join(workdir, "daemon.log"))))
                else:
                    print("ok: $ %s" % command)
    finally:
        for script in glob.glob(os.path.join(workdir, "*.py")):
            if os.path.exists(os.path.join(workdir, "daemon.pid")):
                subprocess.run([sys.executable, script, "--stop"], cwd=workdir, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    print("%d passed, %d failed" % (ran - failures, failures))
    return 1 if failures or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
