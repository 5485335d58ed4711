"""``gdaemon-ctl`` as users run it: a real command against real daemons (docs/reference/ctl.rst)."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from support import DaemonProcess, RawConnection, command, run, wait_until
from support.scripts import echo_daemon, write_script

CTL = command("gdaemon-ctl")

#: Two greenlet workers, ``alpha`` and ``beta``.
WORKER_DAEMON = """
class Idle(GreenletWorker):
    def loop(self):
        pass


daemon = EchoDaemon({"description": "Workers Daemon"})
daemon.workers.install(Idle("alpha"), looptime=0.05, forever=True)
daemon.workers.install(Idle("beta"), looptime=0.05, forever=True)
daemon.init()
"""


def ctl(*args, cwd, env=None, input=None, timeout=30):
    """Run ``gdaemon-ctl ARGS`` in ``cwd``; GDAEMON_* variables cleared unless given."""
    base = {"GDAEMON_SOCKET": "", "GDAEMON_TOKEN": ""}
    base.update(env or {})
    return run([CTL] + list(args), cwd=cwd, env=base, input=input, timeout=timeout)


@pytest.fixture
def workers_daemon(spawn, workdir):
    """A daemon with two greenlet workers, ``alpha`` and ``beta``."""
    path = write_script(workdir, WORKER_DAEMON, patched=False, name="workers_daemon.py")
    proc = spawn([sys.executable, path, "-f"])
    wait_until(lambda: set(proc.result("worker.status").values()) == {1}, 15,
               message="both workers LOOPING")
    return proc


def worker_status(proc, name):
    return proc.result("worker.status", {"name": name})


# -- usage errors: exit 2, checked before connecting (no daemon runs here) -----------------

@pytest.mark.parametrize("args", [
    ["tail", "-n"],
    ["tail", "-n", "many"],
    ["tail", "-n", "10001"],
    ["tail", "--bogus"],
    ["bogus"],
    ["restart"],
    ["help"],
    ["call"],
    ["status", "extra"],
    ["pause", "a", "b"],
    ["stop", "a", "b"],
    ["start"],
    ["signal", "alpha"],
    ["signal", "alpha", "NOSUCH"],
    ["tail", "alpha", "beta"],
    ["shutdown", "now"],
    ["scale", "alpha"],
    ["scale", "alpha", "many"],
    ["scale", "alpha", "-1"],
    ["call", "examples.echo", "positional", "key=value"],
    ["--no-such-option", "status"],
    ["-a", "not-an-address", "status"],
    ["-a", "ftp://host:21", "status"],
    ["--timeout", "zero", "status"],
], ids=lambda args: " ".join(args))
def test_usage_errors_exit_2_before_connecting(workdir, args):
    result = ctl(*args, cwd=workdir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip()
    assert "cannot connect" not in result.stderr
    assert result.stdout == ""


def test_usage_error_names_what_is_missing(workdir):
    result = ctl("restart", cwd=workdir)
    assert "NAME" in result.stderr
    result = ctl("frobnicate", cwd=workdir)
    assert "frobnicate" in result.stderr


def test_help_option_prints_usage_and_exits_0(workdir):
    result = ctl("--help", cwd=workdir)
    assert result.returncode == 0
    assert "Usage:" in result.stdout and "watch [PATTERN...]" in result.stdout


# -- unreachable daemon: exit 3 naming the address ---------------------------------

def test_unreachable_default_address_exits_3(workdir):
    result = ctl("status", cwd=workdir)
    assert result.returncode == 3
    assert "unix://daemon.sock" in result.stderr
    assert result.stdout == ""


def test_unreachable_explicit_and_env_addresses_exit_3(workdir):
    missing = "unix://" + os.path.join(workdir, "missing.sock")
    result = ctl("-a", missing, "methods", cwd=workdir)
    assert result.returncode == 3 and missing in result.stderr
    result = ctl("methods", cwd=workdir, env={"GDAEMON_SOCKET": missing})
    assert result.returncode == 3 and missing in result.stderr
    result = ctl("-a", "tcp://127.0.0.1:9", "call", "x", cwd=workdir)
    assert result.returncode == 3 and "tcp://127.0.0.1:9" in result.stderr


# -- commands against the echo daemon -----------------------------------------------

def test_default_address_is_daemon_sock_in_cwd(echo, workdir):
    result = ctl("call", "examples.echo", "hi", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


def test_env_socket_then_address_option(echo, workdir):
    elsewhere = os.path.dirname(workdir)
    result = ctl("call", "examples.echo", "env", cwd=elsewhere, env={"GDAEMON_SOCKET": echo.address})
    assert (result.returncode, result.stdout) == (0, "env\n"), result.stderr
    # -a wins over the environment.
    result = ctl("-a", "unix://" + os.path.join(workdir, "nope.sock"), "methods", cwd=elsewhere,
                 env={"GDAEMON_SOCKET": echo.address})
    assert result.returncode == 3


def test_methods_one_per_line(echo, workdir):
    result = ctl("methods", cwd=workdir)
    assert result.returncode == 0, result.stderr
    names = result.stdout.splitlines()
    assert "examples.echo" in names and "system.listMethods" in names and "daemon.status" in names
    assert names == sorted(names)
    as_json = ctl("--json", "methods", cwd=workdir)
    assert json.loads(as_json.stdout) == names


def test_help_prints_signature_and_description(echo, workdir):
    result = ctl("help", "examples.echo", cwd=workdir)
    assert result.returncode == 0, result.stderr
    # The signature with parameter names, then the description.
    assert result.stdout.splitlines()[0] == "examples.echo(message: string) -> string"
    assert "I'm here to reply your data" in result.stdout
    as_json = json.loads(ctl("--json", "help", "examples.echo", cwd=workdir).stdout)
    assert as_json["description"] == "I'm here to reply your data"
    assert as_json["signature"] == [["string", "string"]]
    assert as_json["info"]["params"] == [{"name": "message", "type": "string", "nullable": False,
                                          "required": True}]
    missing = ctl("help", "no.such", cwd=workdir)
    assert missing.returncode == 1 and "error -3260" in missing.stderr


def test_help_shows_defaults_and_dedents_the_description(echo, workdir):
    result = ctl("help", "daemon.logtail", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "daemon.logtail(lines: int = 100, worker: string | nil = null) -> array"
    assert lines[1] == ""
    assert lines[2].startswith("Return the last LINES log lines")
    assert all(not line.startswith(" ") for line in lines[2:]), lines   # dedented docstring
    optional = ctl("help", "worker.info", cwd=workdir).stdout.splitlines()[0]
    assert optional == "worker.info(name: string | nil = null) -> any"
    info = echo.result("system.methodInfo", ["events.unsubscribe"])
    assert info["params"][0]["default"] is None and info["params"][0]["required"] is False


def test_status_human_and_json(echo, workdir):
    result = ctl("status", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert int(lines["pid"]) == echo.pid
    assert lines["description"].strip() == "Echo Daemon"
    assert lines["sockethandler"].strip() == echo.address
    # Values are aligned in one column.
    starts = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in result.stdout.splitlines()
              if ":" in line}
    assert len(starts) == 1
    # Nothing to say is not said: no upgrade yet, so no replaced_pid (--json has it).
    assert "replaced_pid" not in lines and "null" not in result.stdout
    status = json.loads(ctl("--json", "status", cwd=workdir).stdout)
    assert status["pid"] == echo.pid and status["description"] == "Echo Daemon"
    assert status["replaced_pid"] is None


def test_call_argument_parsing(echo, workdir):
    def call(*args):
        return ctl("call", "examples.echo", *args, cwd=workdir)
    assert call("plain words").stdout == "plain words\n"
    assert call("message=by name").stdout == "by name\n"
    assert call('"42"').stdout == "42\n"  # JSON string
    assert call('message="7"').stdout == "7\n"
    assert call("message=x=y").stdout == "x=y\n"  # only the first '=' splits
    number = call("42")  # JSON number: not a str
    assert number.returncode == 1 and "error -32602" in number.stderr
    named_number = call("message=42")
    assert named_number.returncode == 1 and "message" in named_number.stderr
    # Structured results print as JSON; --json prints compact JSON of the result.
    methods = ctl("call", "system.methodSignature", "examples.echo", cwd=workdir)
    assert json.loads(methods.stdout) == [["string", "string"]]
    assert ctl("--json", "call", "examples.echo", "hi", cwd=workdir).stdout == '"hi"\n'


def test_rpc_error_exits_1_and_json_prints_the_error_object(echo, workdir):
    result = ctl("call", "no.such.method", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.startswith("error -32601: ")
    result = ctl("--json", "call", "no.such.method", cwd=workdir)
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == -32601


def test_reload_keeps_daemon_serving(echo, workdir):
    result = ctl("reload", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "reloading\n"), result.stderr
    assert ctl("--json", "reload", cwd=workdir).stdout == "true\n"
    assert echo.result("examples.echo", ["still here"]) == "still here"


def test_stop_stops_daemon_with_exit_0(echo, workdir):
    result = ctl("stop", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "stopping\n"), result.stderr
    assert echo.wait(15) == 0
    assert ctl("status", cwd=workdir).returncode == 3


# -- worker commands -----------------------------------------------------------------

def test_workers_table(workers_daemon, workdir):
    result = ctl("workers", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "PID", "STATUS", "LOOPS", "RESTARTS", "RSS", "CPU"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"][1] == "greenlet"
    assert int(rows["alpha"][2]) == workers_daemon.pid
    assert rows["alpha"][3] == "LOOPING"
    info = workers_daemon.result("worker.info", ["alpha"])
    if info.get("rss") is not None:   # worker.info gains rss and cpu (docs/reference/rpc.rst, Methods)
        assert re.match(r"^\d+(\.\d)?[KMG]$", rows["alpha"][6]), rows["alpha"]
        assert re.match(r"^\d+\.\d\ds$", rows["alpha"][7]), rows["alpha"]
    else:
        assert rows["alpha"][6:] == ["-", "-"]
    infos = json.loads(ctl("--json", "workers", cwd=workdir).stdout)
    assert {info["name"] for info in infos} == {"alpha", "beta"}


def test_status_shows_workers_table(workers_daemon, workdir):
    result = ctl("status", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "Workers Daemon" in result.stdout
    table = result.stdout.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["NAME", "KIND", "PID", "STATUS", "LOOPS", "RESTARTS", "RSS", "CPU"]
    assert sorted(line.split()[0] for line in table[1:]) == ["alpha", "beta"]


def test_pause_resume_one_and_all(workers_daemon, workdir):
    result = ctl("pause", "alpha", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "paused alpha\n"), result.stderr
    wait_until(lambda: worker_status(workers_daemon, "alpha") == 2, 10, message="alpha PAUSED")
    assert worker_status(workers_daemon, "beta") == 1
    assert ctl("resume", "alpha", cwd=workdir).stdout == "resumed alpha\n"
    wait_until(lambda: worker_status(workers_daemon, "alpha") == 1, 10, message="alpha LOOPING")
    assert ctl("pause", cwd=workdir).stdout == "paused all workers\n"
    wait_until(lambda: set(workers_daemon.result("worker.status").values()) == {2}, 10,
               message="all PAUSED")
    assert ctl("--json", "resume", cwd=workdir).stdout == "true\n"
    wait_until(lambda: set(workers_daemon.result("worker.status").values()) == {1}, 10,
               message="all LOOPING")


def test_restart_and_unknown_worker(workers_daemon, workdir):
    before = workers_daemon.result("worker.info", {"name": "beta"})
    result = ctl("restart", "beta", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "restarted beta\n"), result.stderr
    after = workers_daemon.result("worker.info", {"name": "beta"})
    assert after["started_at"] > before["started_at"]  # a new instance
    assert after["restarts"] == before["restarts"] + 1
    assert worker_status(workers_daemon, "beta") == 1
    unknown = ctl("restart", "nobody", cwd=workdir)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error -32002: ")
    unknown = ctl("pause", "nobody", cwd=workdir)
    assert unknown.returncode == 1 and "-32002" in unknown.stderr


def test_scale_a_pool(workers_daemon, workdir):
    result = ctl("scale", "alpha", "3", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "alpha: 3 instances (alpha alpha.1 alpha.2)\n"), \
        result.stderr
    assert workers_daemon.result("worker.list") == ["alpha", "alpha.1", "alpha.2", "beta"]
    result = ctl("--json", "scale", "alpha", "1", cwd=workdir)
    assert result.returncode == 0 and json.loads(result.stdout) == ["alpha"]
    unknown = ctl("scale", "nobody", "2", cwd=workdir)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error -32002: ")


#: A daemon with an exec worker ``prog`` (a shell that traps HUP) and a pool ``farm``.
EXEC_DAEMON = """
daemon = EchoDaemon({"description": "Exec Daemon"})
daemon.workers.install(gdaemon.ExecWorker(
    "prog", "trap 'echo got-hup' HUP; echo prog-started; while true; do sleep 0.05; done",
    shell=True), forever=True)
daemon.workers.install(gdaemon.ExecWorker("farm", ["sleep", "1000"]), forever=True, instances=2)
daemon.init()
"""


@pytest.fixture
def exec_daemon(spawn, workdir):
    path = write_script(workdir, EXEC_DAEMON, patched=False, name="exec_daemon.py")
    proc = spawn([sys.executable, path, "-f"])
    wait_until(lambda: set(proc.result("worker.status").values()) == {1}, 15,
               message="every worker LOOPING")
    return proc


def test_stop_start_restart_a_worker_and_a_pool(exec_daemon, workdir):
    result = ctl("stop", "prog", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "stopped prog\n"), result.stderr
    assert worker_status(exec_daemon, "prog") == 5
    assert exec_daemon.result("examples.echo", ["alive"]) == "alive"   # the daemon runs on
    result = ctl("start", "prog", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "started prog\n"), result.stderr
    assert worker_status(exec_daemon, "prog") == 1
    assert ctl("stop", "farm", cwd=workdir).returncode == 0
    assert [worker_status(exec_daemon, n) for n in ("farm.0", "farm.1")] == [5, 5]
    assert ctl("--json", "start", "farm", cwd=workdir).stdout == "true\n"
    assert [worker_status(exec_daemon, n) for n in ("farm.0", "farm.1")] == [1, 1]
    pid = exec_daemon.result("worker.info", ["farm.1"])["pid"]
    assert ctl("restart", "farm.1", cwd=workdir).returncode == 0
    assert exec_daemon.result("worker.info", ["farm.1"])["pid"] != pid
    unknown = ctl("stop", "nobody", cwd=workdir)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error -32002: ")
    assert ctl("start", "nobody", cwd=workdir).returncode == 1
    assert ctl("scale", "nobody", "3", cwd=workdir).returncode == 1


def test_shutdown_is_stop_without_a_name(exec_daemon, workdir):
    result = ctl("shutdown", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "stopping\n"), result.stderr
    assert exec_daemon.wait(15) == 0


def prog_started(proc):
    """Wait until prog's shell has set its trap (it says so after)."""
    wait_until(lambda: any("prog-started" in line for line in proc.result(
        "daemon.logtail", {"lines": 100, "worker": "prog"})), 10, message="prog started")


def test_signal_and_tail_of_one_worker(exec_daemon, workdir):
    prog_started(exec_daemon)
    result = ctl("signal", "prog", "HUP", cwd=workdir)
    assert (result.returncode, result.stdout) == (0, "signalled prog with HUP\n"), result.stderr

    def tail_prog():
        return ctl("tail", "prog", "-n", "50", cwd=workdir).stdout.splitlines()
    lines = wait_until(lambda: [l for l in tail_prog() if "got-hup" in l] and tail_prog(), 10,
                       message="the trapped HUP in tail prog")
    assert lines and all("gdaemon.exec-daemon.prog[" in line for line in lines), lines
    everything = ctl("tail", "-n", "50", cwd=workdir).stdout
    assert "ready on" in everything and "ready on" not in "\n".join(lines)
    assert ctl("signal", "prog", "1", cwd=workdir).returncode == 0
    assert ctl("signal", "nobody", "HUP", cwd=workdir).returncode == 1
    assert ctl("tail", "nobody", cwd=workdir).returncode == 1


def test_tail_follow_of_one_worker(exec_daemon, workdir, watcher):
    prog_started(exec_daemon)
    proc, reader = watcher("tail", "prog", "-n", "0", "-f")
    deadline = time.monotonic() + 15
    seen = []
    while time.monotonic() < deadline and not any("got-hup" in line for line in seen):
        exec_daemon.result("worker.restart", ["farm.0"])   # logs lines not to be printed
        exec_daemon.result("worker.signal", ["prog", "HUP"])
        try:
            line = reader.get(timeout=0.5)
        except queue.Empty:
            continue
        assert line is not None, "tail -f exited early"
        seen.append(line)
    assert any("got-hup" in line for line in seen), seen
    assert all(".prog[" in line for line in seen), seen
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_shell_completes_commands_and_worker_names():
    from gdaemon.ctl.shell import Completer
    fetched = []

    def fetch():
        fetched.append(1)
        return ["web.0", "web.1", "web", "db"] + (["late"] if len(fetched) > 1 else [])
    completer = Completer(fetch)
    assert sorted(completer.candidates([], "sta")) == ["start ", "status "]
    assert completer.candidates([], "sig") == ["signal "]
    assert completer.candidates(["restart"], "we") == ["web ", "web.0 ", "web.1 "]
    assert len(fetched) == 1
    assert completer.candidates(["stop"], "d") == ["db "]
    assert len(fetched) == 1   # fetched once
    assert completer.candidates(["start"], "la") == ["late "]   # nothing matched: fetched again
    assert completer.candidates(["signal", "web"], "h") == ["HUP "]
    assert completer.candidates(["status"], "") == []


# -- authentication -------------------------------------------------------------------

def test_token_from_option_and_environment(workdir):
    path = write_script(workdir, echo_daemon({"token": "s3cret"}), patched=False,
                        name="token_daemon.py")
    proc = DaemonProcess([sys.executable, path, "-f"], workdir)
    proc.start(wait=False)
    try:
        wait_until(lambda: ctl("-t", "s3cret", "methods", cwd=workdir).returncode == 0, 15,
                   message="token daemon")
        assert ctl("-t", "s3cret", "call", "examples.echo", "t", cwd=workdir).stdout == "t\n"
        assert ctl("call", "examples.echo", "e", cwd=workdir,
                   env={"GDAEMON_TOKEN": "s3cret"}).stdout == "e\n"
        refused = ctl("call", "examples.echo", "none", cwd=workdir)
        assert refused.returncode == 1 and refused.stderr.startswith("error -32001: ")
        wrong = ctl("-t", "wrong", "methods", cwd=workdir)
        assert wrong.returncode == 1 and "-32001" in wrong.stderr
    finally:
        proc.stop()


# -- interactive shell -----------------------------------------------------------------

def test_shell_reads_commands_from_stdin(echo, workdir):
    script = "\n".join([
        "# a comment, then a blank line",
        "",
        "call examples.echo 'two words'",
        "call examples.echo message=named",
        "frobnicate",
        "call no.such.method",
        "methods",
        "quit",
        "call examples.echo never-run",
    ]) + "\n"
    result = ctl(cwd=workdir, input=script)
    out = result.stdout.splitlines()
    assert out[:2] == ["two words", "named"]
    assert "examples.echo" in out[2:]
    assert "never-run" not in result.stdout
    assert "frobnicate" in result.stderr and "error -32601" in result.stderr
    assert result.returncode == 0  # the status of the last command (methods)


def test_shell_ends_at_eof_with_last_status_and_survives_unreachable(workdir):
    result = ctl("-a", "unix://" + os.path.join(workdir, "nope.sock"), cwd=workdir,
                 input="help\nmethods\n")
    assert "restart NAME" in result.stdout  # 'help' alone lists the commands
    assert "nope.sock" in result.stderr
    assert result.returncode == 3


def test_shell_json_mode_and_exit(echo, workdir):
    result = ctl("--json", cwd=workdir, input="call examples.echo a\nstatus\nexit\n")
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]) == "a"
    assert json.loads(lines[1])["pid"] == echo.pid
    assert result.returncode == 0


# -- watch ------------------------------------------------------------------------

class LineReader:
    """Read a process's stdout lines in a thread so tests can wait with a deadline."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout):
        return self.lines.get(timeout=timeout)


@pytest.fixture
def watcher(workdir):
    """``watcher(*args)`` starts ``gdaemon-ctl ARGS`` with piped stdout; killed at teardown."""
    procs = []

    def start(*args):
        env = dict(os.environ, GDAEMON_SOCKET="", GDAEMON_TOKEN="")
        proc = subprocess.Popen([CTL] + list(args), cwd=workdir, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        procs.append(proc)
        return proc, LineReader(proc.stdout)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def wait_for_event_line(echo, reader, name, timeout=15):
    """Trigger ``rpc.connect`` events until the watcher prints a line naming ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        RawConnection(echo.address).close()  # emits rpc.connect and rpc.disconnect
        try:
            line = reader.get(timeout=0.2)
        except queue.Empty:
            continue
        assert line is not None, "watch exited early"
        if name in line:
            return line
    raise AssertionError("watch printed no %s line" % name)


def test_watch_prints_events_and_exits_0_on_ctrl_c(echo, workdir, watcher):
    proc, reader = watcher("watch", "rpc.*")
    line = wait_for_event_line(echo, reader, "rpc.connect")
    # TIME NAME DATA: a local timestamp, the event name, its data as JSON.
    date, clock, name, data = line.rstrip("\n").split(" ", 3)
    assert name in ("rpc.connect", "rpc.disconnect")
    assert isinstance(json.loads(data), dict)
    assert time.strptime(date + " " + clock.split(".")[0], "%Y-%m-%d %H:%M:%S")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_watch_json_lines_and_end_when_daemon_stops(echo, workdir, watcher):
    proc, reader = watcher("--json", "watch")
    line = wait_for_event_line(echo, reader, "rpc.connect")
    event = json.loads(line)
    assert set(event) == {"name", "data", "time"}
    echo.call("daemon.stop")
    assert echo.wait(15) == 0
    assert proc.wait(15) == 3
    assert "unix://daemon.sock" in proc.stderr.read()  # the address it was given


# -- tail --------------------------------------------------------------------------

def test_tail_prints_the_last_lines(echo, workdir):
    def reloads():
        return sum("reloading" in line for line in echo.result("daemon.logtail", [100]))
    for count in range(1, 13):
        echo.result("daemon.reload")   # logs "reloading" (overlapping reloads coalesce: one at a time)
        wait_until(lambda: reloads() >= count, 5, message="reload line %d" % count)
    result = ctl("tail", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == echo.result("daemon.logtail", [10])
    assert len(lines) == 10
    three = ctl("tail", "-n", "3", cwd=workdir).stdout.splitlines()
    assert three == lines[-3:]
    assert ctl("tail", "-n5", cwd=workdir).stdout.splitlines() == lines[-5:]
    assert json.loads(ctl("--json", "tail", "-n", "2", cwd=workdir).stdout) == lines[-2:]


def test_tail_follow_prints_new_lines_until_ctrl_c(echo, workdir, watcher):
    proc, reader = watcher("tail", "-n", "1", "-f")
    first = reader.get(timeout=10)
    assert first is not None and " INFO gdaemon.echo-daemon[%d]: " % echo.pid in first, first
    deadline = time.monotonic() + 15
    line = ""
    while "reloading" not in line and time.monotonic() < deadline:
        echo.result("daemon.reload")
        try:
            line = reader.get(timeout=0.5) or ""
        except queue.Empty:
            continue
    assert "INFO gdaemon.echo-daemon[%d]: reloading" % echo.pid in line, line
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_shell_tab_completes_in_a_terminal(exec_daemon, workdir):
    """Through a real pseudo-terminal: Tab completes a command, then a worker name."""
    import pty
    import select
    master, slave = pty.openpty()
    env = dict(os.environ, GDAEMON_SOCKET="", GDAEMON_TOKEN="", TERM="dumb", HOME=workdir)
    proc = subprocess.Popen([CTL], cwd=workdir, env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    output = b""

    def read_until(text, timeout=10):
        nonlocal output
        deadline = time.monotonic() + timeout
        while text not in output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no %r in %r" % (text, output)
            if select.select([master], [], [], remaining)[0]:
                output += os.read(master, 4096)
    try:
        read_until(b"gdaemon> ")
        os.write(master, b"resta\t")
        read_until(b"restart ")
        os.write(master, b"pr\t")
        read_until(b"restart prog ")
        os.write(master, b"\n")
        read_until(b"restarted prog")
        os.write(master, b"quit\n")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
