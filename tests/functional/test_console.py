"""The console and gdaemon-echo (docs/reference/console.rst), on real processes.

Every option and exit code of the console is exercised on real ``gdaemon-echo``
processes or on small exec scripts written into the ``workdir`` fixture
directory.  Written from the documentation alone.
"""

import os
import re
import signal
import socket
import sys

import psutil
import pytest

from support import command, free_port, gone, pid_from_file, rpc, run, wait_gone, wait_until
from support.scripts import echo_daemon, write_script

ECHO = command("gdaemon-echo")

#: Every option of the default console (docs/reference/console.rst).
OPTIONS = ["-d", "--daemon", "-f", "--foreground", "-s", "--clean", "-v", "--verbose",
           "-h", "--help", "--stop", "--status", "--upgrade", "--version"]

#: A daemon whose ``test.log(text)`` logs ``debug-TEXT`` and ``warning-TEXT``.
LOGGING_SCRIPT = """
class LoggingDaemon(Daemon):
    def setup(self):
        @self.rpc.method("test.log", params=[("text", str)], returns=bool)
        def log(text):
            self.logger.debug("debug-marker-" + text)
            self.logger.warning("warning-marker-" + text)
            return True

LoggingDaemon({"description": "Logging Daemon"}).init()
"""


def log_to_daemon_log(workdir, text):
    """``test.log(text)`` on the LOGGING_SCRIPT daemon in ``workdir``; wait for its line in daemon.log."""
    assert rpc(address(workdir), "test.log", {"text": text})["result"] is True
    path = os.path.join(workdir, "daemon.log")
    wait_until(lambda: "warning-marker-" + text in open(path).read(), 5,
               message="warning-marker-%s in daemon.log" % text)


def output(completed):
    return (completed.stdout or "") + (completed.stderr or "")


def sock(workdir, name="daemon.sock"):
    return os.path.join(workdir, name)


def address(workdir, name="daemon.sock"):
    return "unix://" + sock(workdir, name)


def pidfile(workdir):
    return os.path.join(workdir, "daemon.pid")


def start_daemon_mode(workdir, argv=None, env=None):
    """Run ``argv + ["-d"]`` (default gdaemon-echo) to completion; return the daemon's pid."""
    completed = run((argv or [ECHO]) + ["-d"], workdir, timeout=10, env=env)
    assert completed.returncode == 0, output(completed)
    return pid_from_file(pidfile(workdir))


def stop_by_signal(pid, timeout=10):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    wait_gone(pid, timeout)


def serves_echo(addr, text="ping"):
    response = rpc(addr, "examples.echo", {"message": text}, timeout=5)
    return response is not None and response.get("result") == text


# ---------------------------------------------------------------------------
# Banner, help

def test_no_arguments_prints_the_console_and_exits_0(workdir):
    completed = run([ECHO], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    text = output(completed)
    assert "usage" in text.lower()
    for option in OPTIONS:
        assert re.search(r"(^|[\s\[(|,])%s\b" % re.escape(option), text), (option, text)
    # Nothing was started.
    assert not os.path.exists(sock(workdir))
    assert not os.path.exists(pidfile(workdir))


def test_no_arguments_banner_shows_the_description(workdir):
    script = write_script(workdir, echo_daemon({"description": "Banner Test Daemon"}))
    completed = run([sys.executable, script], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert "Banner Test Daemon" in output(completed)
    assert "--foreground" in output(completed)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_the_console_and_exits_0(workdir, flag):
    completed = run([ECHO, flag], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    text = output(completed)
    for option in OPTIONS:
        assert option in text, (option, text)
    assert not os.path.exists(sock(workdir))


# ---------------------------------------------------------------------------
# Foreground

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_foreground_stops_on_signal_with_exit_0_and_removes_its_files(echo, workdir, signum):
    assert os.path.exists(sock(workdir))
    assert pid_from_file(pidfile(workdir)) == echo.pid
    assert serves_echo(echo.address)
    echo.signal(signum)
    assert echo.wait(10) == 0, echo.output()
    assert not os.path.exists(sock(workdir)), "socket file left behind"
    assert not os.path.exists(pidfile(workdir)), "pid file left behind"


@pytest.mark.parametrize("method", ["daemon.stop", "daemon.shutdown"])
def test_daemon_stop_rpc_replies_then_exits_0(echo, workdir, method):
    with echo.connect() as conn:
        response = conn.call(method)
        assert response == {"jsonrpc": "2.0", "result": True, "id": 1}, response
    assert echo.wait(10) == 0, echo.output()
    assert not os.path.exists(sock(workdir))
    assert not os.path.exists(pidfile(workdir))


def test_foreground_keeps_the_shell_cwd(echo, workdir):
    assert os.path.realpath(os.readlink("/proc/%d/cwd" % echo.pid)) == os.path.realpath(workdir)


# ---------------------------------------------------------------------------
# Daemon mode

def test_daemon_mode_is_ready_when_d_returns(workdir):
    completed = run([ECHO, "-d"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    # Straight away, no waiting: -d returns only once the daemon serves.
    assert serves_echo(address(workdir), "ready?")
    pid = pid_from_file(pidfile(workdir))
    try:
        assert pid != os.getpid()
        assert not gone(pid)
        assert os.readlink("/proc/%d/cwd" % pid) == "/"
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null", fd
        # Detached: its own session, no controlling terminal of ours.
        assert os.getsid(pid) != os.getsid(0)
        assert os.path.exists(os.path.join(workdir, "daemon.log"))
    finally:
        stop_by_signal(pid)
    wait_until(lambda: not os.path.exists(pidfile(workdir)) and not os.path.exists(sock(workdir)),
               5, message="files removed after SIGTERM")


def test_daemon_mode_applies_the_default_umask(workdir):
    completed = run(["sh", "-c", "umask 077; exec %s -d" % ECHO], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    pid = pid_from_file(pidfile(workdir))
    try:
        with open("/proc/%d/status" % pid) as f:
            umask = [line.split()[1] for line in f if line.startswith("Umask:")]
        assert umask == ["0022"]
    finally:
        stop_by_signal(pid)


def test_daemon_mode_logs_to_the_logfile_and_foreground_to_stderr(workdir, spawn):
    script = write_script(workdir, LOGGING_SCRIPT)
    pid = start_daemon_mode(workdir, [sys.executable, script])
    logfile = os.path.join(workdir, "daemon.log")
    try:
        log_to_daemon_log(workdir, "dmode")
    finally:
        stop_by_signal(pid)
    os.rename(logfile, logfile + ".old")
    proc = spawn([sys.executable, script, "-f"])
    assert proc.result("test.log", {"text": "fmode"}) is True
    wait_until(lambda: "warning-marker-fmode" in proc.output(), 5, message="the log line on stderr")
    if os.path.exists(logfile):
        assert "warning-marker-fmode" not in open(logfile).read()


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_signal_reopens_the_logfile(workdir, signum):
    """SIGUSR1 reopens the log file; SIGHUP (reload) does too.

    (docs/reference/events.rst, On the daemon's bus: the default listeners.)"""
    script = write_script(workdir, LOGGING_SCRIPT)
    pid = start_daemon_mode(workdir, [sys.executable, script])
    logfile = os.path.join(workdir, "daemon.log")
    try:
        log_to_daemon_log(workdir, "before")
        os.rename(logfile, logfile + ".1")
        os.kill(pid, signum)
        wait_until(lambda: os.path.exists(logfile), 5, message="a new daemon.log after the signal")
        log_to_daemon_log(workdir, "after")
        assert "warning-marker-after" not in open(logfile + ".1").read()
        assert not gone(pid)
    finally:
        stop_by_signal(pid)


# ---------------------------------------------------------------------------
# A second daemon on the same pid file

@pytest.mark.parametrize("flag", ["-d", "-f"])
def test_second_start_is_refused(echo, workdir, flag):
    completed = run([ECHO, flag], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    assert "already running (pid %d)" % echo.pid in output(completed)
    # The first one is undisturbed: same pid file, same socket, still serving.
    assert pid_from_file(pidfile(workdir)) == echo.pid
    assert serves_echo(echo.address)


def test_second_start_of_a_daemonized_daemon_is_refused(workdir):
    pid = start_daemon_mode(workdir)
    try:
        completed = run([ECHO, "-d"], workdir, timeout=20)
        assert completed.returncode == 1, output(completed)
        assert "already running (pid %d)" % pid in output(completed)
        assert pid_from_file(pidfile(workdir)) == pid
        assert serves_echo(address(workdir))
    finally:
        stop_by_signal(pid)


# ---------------------------------------------------------------------------
# --status, --stop

def test_status_exit_0_when_running_3_when_not(echo, workdir):
    completed = run([ECHO, "--status"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert output(completed).strip()
    echo.signal(signal.SIGTERM)
    assert echo.wait(10) == 0
    completed = run([ECHO, "--status"], workdir, timeout=20)
    assert completed.returncode == 3, output(completed)
    assert output(completed).strip()


def test_status_in_an_empty_directory_exits_3(workdir):
    completed = run([ECHO, "--status"], workdir, timeout=20)
    assert completed.returncode == 3, output(completed)


def test_stop_stops_the_daemon_and_waits_until_it_is_gone(workdir):
    pid = start_daemon_mode(workdir)
    completed = run([ECHO, "--stop"], workdir, timeout=30)
    try:
        assert completed.returncode == 0, output(completed)
        # --stop returned: the daemon is already gone and cleaned up after itself.
        assert gone(pid)
        assert not os.path.exists(pidfile(workdir))
        assert not os.path.exists(sock(workdir))
    finally:
        stop_by_signal(pid)


def test_stop_with_nothing_running_says_so_and_exits_0(workdir):
    completed = run([ECHO, "--stop"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert re.search(r"not running|no daemon|isn't running|nothing", output(completed), re.I), \
        output(completed)


@pytest.fixture
def unrelated(workdir):
    """A live process that is not a daemon, its pid written into a stale daemon.pid."""
    import subprocess
    proc = subprocess.Popen(["sleep", "60"])
    with open(pidfile(workdir), "w") as f:
        f.write("%d\n" % proc.pid)
    yield proc
    proc.kill()
    proc.wait()


def test_status_with_a_stale_pid_file_exits_3(workdir, unrelated):
    completed = run([ECHO, "--status"], workdir, timeout=20)
    assert completed.returncode == 3, output(completed)


def test_stop_never_signals_a_process_that_is_not_the_daemon(workdir, unrelated):
    """The pid file of a dead daemon may name a live unrelated process: no lock, no signal."""
    completed = run([ECHO, "--stop"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert unrelated.poll() is None, "--stop killed an unrelated process"


def test_start_over_a_stale_pid_file(workdir, unrelated, spawn):
    proc = spawn([ECHO, "-f"])
    assert pid_from_file(pidfile(workdir)) == proc.pid
    assert unrelated.poll() is None


# ---------------------------------------------------------------------------
# -s / --clean

def _killed_daemon(workdir):
    """Start a -d daemon and SIGKILL it: its socket and pid file stay behind."""
    pid = start_daemon_mode(workdir)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert os.path.exists(sock(workdir)) and os.path.exists(pidfile(workdir))
    return pid


@pytest.mark.parametrize("flag", ["-s", "--clean"])
def test_clean_alone_removes_stale_files_and_exits_0(workdir, flag):
    _killed_daemon(workdir)
    completed = run([ECHO, flag], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert not os.path.exists(sock(workdir))
    assert not os.path.exists(pidfile(workdir))


def test_clean_with_d_starts_a_new_daemon(workdir):
    old = _killed_daemon(workdir)
    completed = run([ECHO, "-s", "-d"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    pid = pid_from_file(pidfile(workdir))
    try:
        assert pid != old
        assert serves_echo(address(workdir))
    finally:
        stop_by_signal(pid)


def test_clean_with_f_starts_a_new_daemon(workdir, spawn):
    _killed_daemon(workdir)
    proc = spawn([ECHO, "-s", "-f"])
    assert pid_from_file(pidfile(workdir)) == proc.pid
    assert serves_echo(proc.address)


def test_clean_removes_a_pid_file_naming_an_unrelated_process(workdir, unrelated):
    completed = run([ECHO, "-s"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert not os.path.exists(pidfile(workdir))
    assert unrelated.poll() is None


def test_clean_never_removes_the_files_of_a_live_daemon(echo, workdir):
    socket_inode = os.stat(sock(workdir)).st_ino
    completed = run([ECHO, "-s"], workdir, timeout=20)
    assert os.path.exists(sock(workdir)), output(completed)
    assert os.stat(sock(workdir)).st_ino == socket_inode
    assert pid_from_file(pidfile(workdir)) == echo.pid
    assert serves_echo(echo.address)
    assert echo.proc.poll() is None


# ---------------------------------------------------------------------------
# -v

def test_verbose_enables_debug_logging(workdir, spawn):
    script = write_script(workdir, LOGGING_SCRIPT)
    quiet = spawn([sys.executable, script, "-f"])
    assert quiet.result("test.log", {"text": "quiet"}) is True
    wait_until(lambda: "warning-marker-quiet" in quiet.output(), 5)
    assert "debug-marker-quiet" not in quiet.output()
    quiet.signal(signal.SIGTERM)
    assert quiet.wait(10) == 0

    loud = spawn([sys.executable, script, "-f", "-v"])
    assert loud.result("test.log", {"text": "loud"}) is True
    wait_until(lambda: "warning-marker-loud" in loud.output(), 5)
    assert "debug-marker-loud" in loud.output()


# ---------------------------------------------------------------------------
# Address in use, -a, GDAEMON_SOCKET

@pytest.fixture
def held_port():
    """A TCP port on 127.0.0.1 held by a listening socket of ours."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield holder.getsockname()[1]
    holder.close()


def test_address_in_use_foreground_exits_1_with_the_reason(workdir, held_port):
    completed = run([ECHO, "-f", "-a", "tcp://127.0.0.1:%d" % held_port], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    assert "in use" in output(completed).lower(), output(completed)


def test_address_in_use_daemon_mode_exits_1_with_the_reason(workdir, held_port):
    completed = run([ECHO, "-d"], workdir, timeout=20,
                    env={"GDAEMON_SOCKET": "tcp://127.0.0.1:%d" % held_port})
    assert completed.returncode == 1, output(completed)
    assert "in use" in output(completed).lower(), output(completed)
    # Nothing is left running on our pid file.
    if os.path.exists(pidfile(workdir)):
        try:
            pid = pid_from_file(pidfile(workdir))
        except ValueError:
            pid = None
        if pid:
            wait_gone(pid, 5)


def test_unix_socket_of_another_live_daemon_is_in_use(echo, workdir):
    """A daemon with another pid file but the same socket path is refused; the first is intact."""
    other = os.path.join(workdir, "other")
    os.mkdir(other)
    inode = os.stat(sock(workdir)).st_ino
    completed = run([ECHO, "-f", "-a", echo.address], other, timeout=10)
    assert completed.returncode == 1, output(completed)
    assert "in use" in output(completed).lower(), output(completed)
    assert os.stat(sock(workdir)).st_ino == inode
    assert serves_echo(echo.address)


def test_echo_address_option_tcp(spawn):
    addr = "tcp://127.0.0.1:%d" % free_port()
    proc = spawn([ECHO, "-f", "-a", addr], address=addr)
    assert serves_echo(addr, "over tcp")
    assert proc.result("daemon.status")["sockethandler"] == addr


def test_echo_address_option_unix(spawn, workdir):
    addr = address(workdir, "other.sock")
    spawn([ECHO, "-f", "-a", addr], address=addr)
    assert serves_echo(addr)
    assert not os.path.exists(sock(workdir))


def test_echo_gdaemon_socket_environment(spawn):
    addr = "tcp://127.0.0.1:%d" % free_port()
    spawn([ECHO, "-f"], env={"GDAEMON_SOCKET": addr}, address=addr)
    assert serves_echo(addr, "from env")


# ---------------------------------------------------------------------------
# Exec scripts: arguments, niceness, config errors, paths

def arguments_script(description, usage):
    """A daemon whose own ``usage`` replaces the console; ``test.arguments`` returns what was parsed."""
    return '''
class ArgsDaemon(Daemon):
    def setup(self):
        @self.rpc.method("test.arguments", returns=dict)
        def arguments():
            return dict(self.arguments)


ArgsDaemon({"description": %r, "arguments": %r}).init()
''' % (description, usage)


ARGS_SCRIPT = arguments_script("Args Daemon", """Args Daemon.

Usage:
  mydaemon.py [-d | -f] [-s] [-v] [--name=NAME]
  mydaemon.py (-h | --help)

Options:
  -d --daemon       run as a daemon
  -f --foreground   run in the foreground
  -s --clean        remove stale files first
  -v --verbose      debug logging
  --name=NAME       a name for this daemon [default: anonymous]
  -h --help         print this
""")


def test_custom_arguments_replace_the_console(workdir, spawn):
    script = write_script(workdir, ARGS_SCRIPT)
    completed = run([sys.executable, script, "--help"], workdir, timeout=20)
    assert completed.returncode == 0, output(completed)
    assert "--name=NAME" in output(completed)

    proc = spawn([sys.executable, script, "-f", "--name=bob"])
    arguments = proc.result("test.arguments")
    assert arguments["--name"] == "bob"
    assert arguments["--foreground"] is True
    assert arguments["--daemon"] is False


def test_custom_arguments_daemon_mode(workdir):
    script = write_script(workdir, ARGS_SCRIPT)
    pid = start_daemon_mode(workdir, [sys.executable, script])
    try:
        arguments = rpc(address(workdir), "test.arguments")["result"]
        assert arguments["--name"] == "anonymous"
        assert arguments["--daemon"] is True
    finally:
        stop_by_signal(pid)


def test_niceness_is_absolute(workdir, spawn):
    script = write_script(workdir, echo_daemon({"description": "Nice Daemon", "niceness": 5}))
    # Started at nice 2: an absolute niceness gives 5, an increment would give 7.
    proc = spawn(["nice", "-n", "2", sys.executable, script, "-f"])
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 5


@pytest.mark.parametrize("config,key", [
    ('{"description": "Bad", "no_such_key": 1}', "no_such_key"),
    ('{"description": "Bad", "socketbuffer": "big"}', "socketbuffer"),
    ('{"description": "Bad", "socketmaxconnections": True}', "socketmaxconnections"),
])
@pytest.mark.parametrize("flag", ["-f", "-d"])
def test_bad_config_exits_1_naming_the_key(workdir, config, key, flag):
    script = write_script(workdir, echo_daemon(config))
    completed = run([sys.executable, script, flag], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    # One line, "error: ...", naming the key; never a traceback (docs/reference/console.rst).
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert key in lines[0]
    assert "Traceback" not in completed.stderr
    assert not os.path.exists(sock(workdir))


def test_bad_config_with_verbose_adds_the_traceback(workdir):
    script = write_script(workdir, echo_daemon({"description": "Bad", "no_such_key": 1}))
    completed = run([sys.executable, script, "-f", "-v"], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    assert "Traceback" in completed.stderr
    assert completed.stderr.splitlines()[-1] == "error: unknown configuration key 'no_such_key'"


def test_other_uncaught_exceptions_keep_their_traceback(workdir):
    script = write_script(workdir, """
        raise KeyError("not a gdaemon error")
    """)
    completed = run([sys.executable, script, "-f"], workdir, timeout=20)
    assert completed.returncode == 1
    assert "Traceback" in completed.stderr and "KeyError" in completed.stderr


@pytest.mark.parametrize("args,words", [
    (["-a", "foo"], ["-a", "SCHEME://ADDRESS", "foo"]),
    (["-a", "tcp://127.0.0.1:80x"], ["-a", "tcp://127.0.0.1:80x"]),
    (["-a", "ftp://127.0.0.1:21"], ["-a", "scheme", "ftp"]),
    (["-a", "tcp://127.0.0.1:99999"], ["-a", "99999"]),
    (["--http", "unix:///tmp/x.sock"], ["--http", "unix"]),
    (["--http", "tcp://localhost"], ["--http", "tcp://localhost"]),
])
@pytest.mark.parametrize("flag", ["-d", "-f"])
def test_echo_bad_address_is_one_line_and_exit_1(workdir, args, words, flag):
    completed = run([ECHO] + args + [flag], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    for word in words:
        assert word in lines[0], (word, lines)
    assert completed.stdout == ""
    assert not os.path.exists(pidfile(workdir))


def test_echo_non_loopback_without_token_is_one_line(workdir):
    completed = run([ECHO, "-a", "tcp://192.0.2.1:8080", "-f"], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing"), completed.stderr


@pytest.mark.parametrize("args,offending", [
    (["--bogus-flag"], "unknown option --bogus-flag"),
    (["-x", "-f"], "unknown option -x"),
    (["-d", "-f"], "option -f cannot be combined with -d"),
    (["--stop", "-d"], "option -d cannot be combined with --stop"),
    (["--status", "--stop"], "option --stop cannot be combined with --status"),
    (["-a"], "option -a needs a value"),
    (["stray"], "unexpected argument 'stray'"),
])
def test_echo_usage_errors_print_usage_and_one_line_exit_2(workdir, args, offending):
    completed = run([ECHO] + args, workdir, timeout=20)
    assert completed.returncode == 2, output(completed)
    lines = completed.stderr.splitlines()
    assert lines[0] == "Usage:", completed.stderr
    assert lines[-1] == "error: " + offending, completed.stderr
    assert "Option(" not in completed.stderr and "Traceback" not in completed.stderr
    assert not os.path.exists(sock(workdir))


def test_exec_script_usage_error_names_the_option(workdir):
    script = write_script(workdir, ARGS_SCRIPT)
    completed = run([sys.executable, script, "-f", "--nmae=bob"], workdir, timeout=20)
    assert completed.returncode == 2, output(completed)
    assert completed.stderr.splitlines()[-1] == "error: unknown option --nmae"
    assert "mydaemon.py [-d | -f]" in completed.stderr


SHORT_ONLY_SCRIPT = arguments_script("Short Daemon", """Short Daemon.

Usage:
  short.py [-d | -f] [--name NAME]
  short.py --stop
  short.py -h

Options:
  -d           run as a daemon
  -f           run in the foreground
  --name NAME  a name [default: anonymous]
  --stop       stop it
  -h           help
""")


def test_custom_usage_with_short_only_d_and_f(workdir, spawn):
    script = write_script(workdir, SHORT_ONLY_SCRIPT, name="short.py")
    proc = spawn([sys.executable, script, "-f", "--name", "alice"])
    arguments = proc.result("test.arguments")
    assert arguments["-f"] is True and arguments["--name"] == "alice"
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0

    pid = start_daemon_mode(workdir, [sys.executable, script])
    try:
        assert rpc(address(workdir), "test.arguments")["result"]["-d"] is True
        stopped = run([sys.executable, script, "--stop"], workdir, timeout=30)
        assert stopped.returncode == 0, output(stopped)
        assert gone(pid)
    finally:
        stop_by_signal(pid)
    completed = run([sys.executable, script, "-h"], workdir, timeout=20)
    assert completed.returncode == 0 and "Short Daemon" in completed.stdout


def test_relative_unix_socket_resolves_against_the_start_directory(workdir):
    script = write_script(workdir, echo_daemon({"description": "Relative",
                                                "sockethandler": "unix://rel.sock"}))
    pid = start_daemon_mode(workdir, [sys.executable, script])
    try:
        # The daemon's cwd is now "/", yet the socket is where it was started.
        assert os.readlink("/proc/%d/cwd" % pid) == "/"
        path = sock(workdir, "rel.sock")
        assert os.path.exists(path)
        status = rpc("unix://" + path, "daemon.status")["result"]
        assert status["sockethandler"].startswith("unix:///")
        assert os.path.realpath(status["sockethandler"][len("unix://"):]) == os.path.realpath(path)
    finally:
        stop_by_signal(pid)


def test_explicit_basepath(workdir, spawn):
    base = os.path.join(workdir, "base")
    os.mkdir(base)
    script = write_script(workdir, echo_daemon({"description": "Based", "basepath": base,
                                                "sockethandler": "unix://b.sock"}))
    addr = "unix://" + os.path.join(base, "b.sock")
    proc = spawn([sys.executable, script, "-f"], address=addr)
    assert os.path.exists(os.path.join(base, "daemon.pid"))
    assert pid_from_file(os.path.join(base, "daemon.pid")) == proc.pid
    assert not os.path.exists(sock(workdir, "b.sock"))


# -- fit for service managers and people (issue 16) ---------------------------------

def test_version_of_an_exec_script_and_of_ctl(workdir):
    from gdaemon.version import __version__
    for argv in ([ECHO, "--version"], [command("gdaemon-ctl"), "--version"],
                 [sys.executable, write_script(workdir, echo_daemon({})), "--version"]):
        completed = run(argv, workdir, timeout=20)
        assert completed.returncode == 0, output(completed)
        assert __version__ in completed.stdout and completed.stdout.count("\n") == 1, completed.stdout


#: A worker whose spinup() takes SLOW seconds, and one (with FAIL=1) whose spinup() raises.
STARTUP_WORKERS = """
SLOW = float(os.environ.get("SLOW", "0"))


class Slow(Worker):
    def spinup(self):
        time.sleep(SLOW)
        if os.environ.get("FAIL") == "1":
            raise RuntimeError("no database at db.example:5432")

    def loop(self):
        pass


daemon = EchoDaemon({"description": "Startup Daemon"})
daemon.workers.install(Slow("slow"), looptime=0.2, forever=os.environ.get("FOREVER") == "1")
daemon.init()
"""


def test_daemon_mode_returns_once_every_worker_is_looping(workdir):
    script = write_script(workdir, STARTUP_WORKERS)
    completed = run([sys.executable, script, "-d"], workdir, timeout=30, env={"SLOW": "1.5"})
    assert completed.returncode == 0, output(completed)
    # No waiting: the worker is LOOPING the moment -d returned.
    assert rpc(address(workdir), "worker.status", {"name": "slow"})["result"] == 1
    assert run([sys.executable, script, "--stop"], workdir, timeout=30).returncode == 0


@pytest.mark.parametrize("forever", ["0", "1"])
def test_worker_failing_before_ready_makes_d_exit_1_naming_it(workdir, forever):
    script = write_script(workdir, STARTUP_WORKERS)
    completed = run([sys.executable, script, "-d"], workdir, timeout=30,
                    env={"SLOW": "0.2", "FAIL": "1", "FOREVER": forever})
    assert completed.returncode == 1, output(completed)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ") and "'slow'" in lines[0]
    assert "no database at db.example:5432" in lines[0]
    # The daemon did not stay behind, nor any child of it (a respawn in
    # flight when it stopped left one waiting for ever at its gate).
    wait_until(lambda: not os.path.exists(pidfile(workdir)), 15, message="the daemon to stop")
    assert run([sys.executable, script, "--status"], workdir).returncode == 3
    wait_until(lambda: not holders_of(workdir), 10, message="no process left with a file of the daemon's")


def holders_of(directory):
    """Live processes with a descriptor open on a file under ``directory``."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            fd_dir = "/proc/%d/fd" % proc.info["pid"]
            targets = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
        except OSError:
            continue
        if any(t.startswith(str(directory) + os.sep) for t in targets):
            found.append(proc.info["pid"])
    return found


SETUP_RAISES = """
class Broken(Daemon):
    def setup(self):
        raise ValueError("bad setting: colour=purple")


Broken({"description": "Broken"}).init()
"""


@pytest.mark.parametrize("flag", ["-f", "-d"])
def test_exception_in_setup_is_one_line(workdir, flag):
    script = write_script(workdir, SETUP_RAISES)
    completed = run([sys.executable, script, flag], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "ValueError: bad setting: colour=purple" in lines[0]
    assert "Traceback" not in completed.stderr


def test_exception_in_setup_with_verbose_has_one_traceback(workdir):
    script = write_script(workdir, SETUP_RAISES)
    completed = run([sys.executable, script, "-f", "-v"], workdir, timeout=20)
    assert completed.returncode == 1, output(completed)
    assert completed.stderr.count("Traceback") == 1, completed.stderr
    assert "ValueError: bad setting: colour=purple" in completed.stderr


def test_token_errors_say_how_to_give_a_token(spawn, workdir):
    spawn([ECHO, "-f"], env={"GDAEMON_TOKEN": "s3cret"}, wait=False)
    wait_until(lambda: os.path.exists(sock(workdir)), 15, message="the daemon's socket")
    ctl = [command("gdaemon-ctl"), "-a", address(workdir)]
    env = {"GDAEMON_TOKEN": ""}
    for argv in (ctl + ["status"], ctl + ["-t", "wrong", "status"]):
        completed = run(argv, workdir, env=env)
        assert completed.returncode == 1, output(completed)
        assert "-t TOKEN" in completed.stderr and "GDAEMON_TOKEN" in completed.stderr, completed.stderr
        assert "system.auth" not in completed.stderr
    completed = run(ctl + ["status"], workdir, env={"GDAEMON_TOKEN": "s3cret"})
    assert completed.returncode == 0, output(completed)
    from gdaemon.client import Client
    from gdaemon.errors import Unauthorized
    with pytest.raises(Unauthorized) as refused:
        Client(address(workdir)).call("daemon.status")
    assert "token" in refused.value.message and "system.auth" not in refused.value.message
