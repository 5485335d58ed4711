"""``gdaemon FILE``: a daemon described in a TOML file, run as a real process (issue 17).

``--check`` prints the workers in start order or one line per problem; the
daemon runs with the console of every daemon; a reload (SIGHUP or
``daemon.reload``) re-reads the file: added workers start, removed ones
stop, changed ones are replaced, unchanged ones keep their process; a file
that does not check out is refused and the daemon goes on unchanged.
"""

import os
import signal
import socket
import sys
import textwrap
import threading
import urllib.request

import pytest

from support import command, free_port, gone, kill_pidfile_daemon, rpc, run, wait_until

#: The console script; in a virtualenv installed before it existed, the same module run with -m.
GDAEMON = command("gdaemon") if os.path.exists(command("gdaemon")) else None


def gdaemon(*args):
    """The argv of the ``gdaemon`` command with ``args``."""
    if GDAEMON is not None:
        return [GDAEMON] + list(args)
    return [sys.executable, "-m", "gdaemon.filedaemon"] + list(args)

#: Python workers the daemon files of these tests name (``class = "fileworkers:Tick"``).
WORKERS = '''\
import os

from gdaemon import GreenletWorker, Worker


class Tick(Worker):
    def spinup(self):
        with open(os.path.join(os.path.dirname(__file__), self.name + ".spinup"), "a") as f:
            f.write("%d\\n" % os.getpid())

    def loop(self):
        pass


class GTick(GreenletWorker):
    def loop(self):
        pass
'''

BASE = """
[daemon]
description = "File Daemon"
shutdowntimeout = 5

[workers.steady]
class = "fileworkers:Tick"
looptime = 0.1
forever = true

[workers.pool]
class = "fileworkers:Tick"
instances = 2
looptime = 0.1
forever = true
after = ["steady"]

[workers.going]
class = "fileworkers:GTick"
forever = true

[workers.changing]
class = "fileworkers:Tick"
looptime = 0.1
forever = true
"""


def write(workdir, text, name="daemon.toml"):
    path = os.path.join(workdir, name)
    with open(path + ".tmp", "w") as f:
        f.write(textwrap.dedent(text))
    os.replace(path + ".tmp", path)  # a reload never sees half a file
    return path


@pytest.fixture
def files(workdir):
    with open(os.path.join(workdir, "fileworkers.py"), "w") as f:
        f.write(WORKERS)
    return workdir


def infos(proc):
    """``{name: worker.info}`` of every worker instance."""
    return {info["name"]: info for info in proc.result("worker.info")}


def looping(proc, names):
    found = infos(proc)
    if sorted(found) != sorted(names):
        return False
    if not all(info["status_name"] == "LOOPING" for info in found.values()):
        return False
    return found


def test_check_prints_the_workers_in_start_order(files):
    write(files, BASE)
    result = run(gdaemon("--check", "daemon.toml"), files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "steady (class fileworkers:Tick)",
        "going (class fileworkers:GTick)",
        "changing (class fileworkers:Tick)",
        "pool (class fileworkers:Tick, 2 instances, after steady)",
    ]


def test_check_prints_one_line_per_problem_and_exits_1(files):
    write(files, """
        [daemon]
        socketmode = "0600"
        [workers.web]
        command = ["x"]
        maxrss = "lots"
        after = ["db"]
        [workers.py]
        class = "fileworkers:Nope"
    """)
    result = run(gdaemon("--check", "daemon.toml"), files)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert 'workers.web.maxrss: expected a size like "512M", got "lots"' in lines
    assert "workers.web.after: no worker 'db' in this file" in lines
    assert "workers.py.class: fileworkers has no Nope" in lines
    assert any(line.startswith("daemon.socketmode:") for line in lines)
    assert len(lines) == 4, lines
    assert "Traceback" not in result.stdout + result.stderr


def test_check_of_a_toml_syntax_error_names_the_line(files):
    write(files, '[daemon]\ndescription = "x"\n[workers.a\n')
    result = run(gdaemon("--check", "daemon.toml"), files)
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1 and "line 3" in result.stdout, result.stdout


def test_starting_a_bad_file_is_one_line_and_exit_1(files):
    write(files, """
        [workers.a]
        class = "nosuchmodule:A"
        [workers.b]
        command = []
    """)
    result = run(gdaemon("daemon.toml", "-d"), files)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "workers.a.class: cannot import nosuchmodule" in result.stderr
    assert "gdaemon --check" in result.stderr
    assert not os.path.exists(os.path.join(files, "daemon.pid"))


def test_usage_errors_exit_2(files):
    write(files, BASE)
    result = run(gdaemon("daemon.toml", "--bogus"), files)
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr
    result = run(gdaemon(), files)
    assert result.returncode == 0 and "gdaemon --check FILE" in result.stdout


def test_daemon_mode_status_and_stop_even_with_the_file_broken_meanwhile(files):
    write(files, BASE)
    result = run(gdaemon("daemon.toml", "-d"), files)
    try:
        assert result.returncode == 0, result.stderr
        status = run(gdaemon("daemon.toml", "--status"), files)
        assert status.returncode == 0 and "File Daemon is running" in status.stdout
        # Somebody edits the file; --status and --stop still find the daemon.
        with open(os.path.join(files, "daemon.toml"), "a") as f:
            f.write("\n[workers.half]\nclass = \n")
        write(files, BASE.replace('class = "fileworkers:GTick"', 'class = "fileworkers:Gone"'))
        status = run(gdaemon("daemon.toml", "--status"), files)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        stopped = run(gdaemon("daemon.toml", "--stop"), files)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not os.path.exists(os.path.join(files, "daemon.pid"))


def test_paths_are_relative_to_the_file_not_the_current_directory(files, spawn):
    etc = os.path.join(files, "etc")
    os.mkdir(etc)
    os.rename(os.path.join(files, "fileworkers.py"), os.path.join(etc, "fileworkers.py"))
    write(etc, BASE)
    # Started from another directory: socket, pid file and classes are found beside the file.
    proc = spawn(gdaemon("etc/daemon.toml", "-f"), address="unix://%s/daemon.sock" % etc)
    wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "going", "changing"]),
               message="the workers of the file")
    assert os.path.exists(os.path.join(etc, "daemon.pid"))
    assert not os.path.exists(os.path.join(files, "daemon.sock"))


def test_reload_applies_the_difference_and_leaves_the_rest_alone(files, spawn):
    write(files, BASE)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    before = wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "going", "changing"]),
                        message="the workers of the file")
    write(files, BASE.replace("""
[workers.going]
class = "fileworkers:GTick"
forever = true
""", "").replace("instances = 2", "instances = 3").replace("""
[workers.changing]
class = "fileworkers:Tick"
looptime = 0.1
""", """
[workers.changing]
class = "fileworkers:Tick"
looptime = 0.2
""") + """
[workers.added]
class = "fileworkers:Tick"
forever = true
after = ["pool"]
""")
    proc.signal(signal.SIGHUP)
    after = wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "pool.2", "changing", "added"])
                       and "reload: adding worker added" in proc.output() and infos(proc)["added"],
                       message="the reloaded workers")
    after = infos(proc)
    # Unchanged: the same processes.  A pool only scaled: its instances stay.
    for name in ("steady", "pool.0", "pool.1"):
        assert after[name]["pid"] == before[name]["pid"], name
        assert after[name]["restarts"] == 0
    # Changed: a new process with the new options.
    assert after["changing"]["pid"] != before["changing"]["pid"]
    assert after["changing"]["looptime"] == 0.2
    assert "going" not in after
    assert proc.result("daemon.status")["pid"] == proc.pid
    output = proc.output()
    assert "reload: removing worker 'going'" in output
    assert "reload: scaling worker 'pool' from 2 to 3 instances" in output
    assert output.count("reload: replacing worker changing") == 1, output


def test_a_file_that_does_not_check_out_is_refused(files, spawn):
    write(files, BASE)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    before = wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "going", "changing"]),
                        message="the workers of the file")
    write(files, BASE.replace("looptime = 0.1", 'looptime = "fast"', 1) + "\n[workers.new]\ncommand = []\n")
    assert proc.result("daemon.reload") is True
    wait_until(lambda: "reload refused, nothing changed" in proc.output(), message="the refusal")
    refusal = [line for line in proc.output().splitlines() if "reload refused" in line]
    assert len(refusal) == 1
    assert "workers.steady.looptime" in refusal[0] and "and 1 more problem" in refusal[0]
    after = infos(proc)
    assert {name: info["pid"] for name, info in after.items()} == \
        {name: info["pid"] for name, info in before.items()}
    assert all(info["status_name"] == "LOOPING" for info in after.values())
    # And the daemon still takes a good file afterwards.
    write(files, BASE.replace("instances = 2", "instances = 1"))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: looping(proc, ["steady", "pool", "going", "changing"]) or
               looping(proc, ["steady", "pool.0", "going", "changing"]), message="the pool scaled down")


def test_daemon_keys_that_need_a_restart_are_named(files, spawn):
    write(files, BASE)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "going", "changing"]),
               message="the workers of the file")
    write(files, BASE.replace("shutdowntimeout = 5", "shutdowntimeout = 7\nsocketidle = 30"))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "no worker changed" in proc.output(), message="the reload")
    output = proc.output()
    assert "daemon.socketidle changed in the file; that takes a restart or --upgrade" in output
    assert "reload: daemon.shutdowntimeout = 7 (was 5)" in output
    assert "no worker changed" in output


def test_a_removed_worker_frees_its_listening_socket(files, spawn):
    port = free_port()
    listening = BASE + """
[workers.web]
class = "fileworkers:Tick"
forever = true
instances = 2
listen = "tcp://127.0.0.1:%d"
""" % port
    write(files, listening)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    names = ["steady", "pool.0", "pool.1", "going", "changing"]
    wait_until(lambda: looping(proc, names + ["web.0", "web.1"]), message="the workers of the file")
    wait_until(lambda: proc.result("daemon.status")["pid"] and _port_taken(port), message="the listener")
    write(files, BASE)
    proc.signal(signal.SIGHUP)
    wait_until(lambda: looping(proc, names), message="web removed")
    # No process of the daemon (standby, fork server) keeps a copy of the socket.
    wait_until(lambda: not _port_taken(port), message="the port to be free")


def _port_taken(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


# -- the shipped example ---------------------------------------------------------------

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples")
STACK_FILES = ("stack.toml", "fd3_server.py", "stack_workers.py")


@pytest.fixture
def stack_copy(workdir, request):
    """``examples/`` of a fresh clone, copied into ``workdir`` (the clone's root), with
    the stack's two ports moved to free ones; its -d daemon is killed at teardown."""
    examples = os.path.join(workdir, "examples")
    os.mkdir(examples)
    web, dashboard = free_port(), free_port()
    for name in STACK_FILES:
        with open(os.path.join(EXAMPLES, name)) as f:
            text = f.read()
        if name == "stack.toml":
            assert "127.0.0.1:8000" in text and "127.0.0.1:8080" in text
            text = text.replace("127.0.0.1:8000", "127.0.0.1:%d" % web)
            text = text.replace("127.0.0.1:8080", "127.0.0.1:%d" % dashboard)
        with open(os.path.join(examples, name), "w") as f:
            f.write(text)
    request.addfinalizer(lambda: kill_pidfile_daemon(examples))
    return workdir, web, dashboard


def _get(port, path="/"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as response:
        return response.status, response.read().decode()


def test_the_shipped_stack_runs_as_the_readme_says(stack_copy):
    root, web, dashboard = stack_copy
    result = run(gdaemon("--check", "examples/stack.toml"), root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "web (exec, 2 instances, listen tcp://127.0.0.1:%d)" % web,
        "prober (class stack_workers:Prober, after web)",
    ]
    result = run(gdaemon("examples/stack.toml", "-d"), root)
    assert result.returncode == 0, result.stdout + result.stderr
    address = "unix://%s/examples/daemon.sock" % root
    try:
        # The program: two processes accepting on the socket the daemon holds.
        workers = {info["name"]: info for info in rpc(address, "worker.info")["result"]}
        assert sorted(workers) == ["prober", "web.0", "web.1"]
        web_pids = {workers["web.0"]["pid"], workers["web.1"]["pid"]}
        status, body = _get(web)
        assert status == 200 and body.startswith("hello from pid ")
        assert int(body.split()[-1]) in web_pids
        # The Python worker reaches it; the dashboard is on.
        stats = wait_until(lambda: (lambda s: s if s["ok"] else None)(
            rpc(address, "worker.call", ["prober", "stats"])["result"]), message="the prober's first probe")
        assert stats["target"] == "http://127.0.0.1:%d/" % web
        status, body = _get(dashboard, "/healthz")
        assert (status, body.strip()) == (200, "ok")
        # The program's lines are the daemon's log records.
        wait_until(lambda: "GET / HTTP" in open(os.path.join(root, "examples", "daemon.log")).read(),
                   message="the program's request line in the log")
    finally:
        stopped = run(gdaemon("examples/stack.toml", "--stop"), root)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert all(gone(pid) for pid in web_pids)


PROGRAMS = """
[daemon]
shutdowntimeout = 5

[workers.steady]
command = ["sleep", "1000"]

[workers.changing]
command = ["sleep", "1001"]
env = {MODE = "one"}

[workers.going]
command = ["sleep", "1002"]
"""


def test_reload_of_programs(files, spawn):
    write(files, PROGRAMS)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    before = wait_until(lambda: looping(proc, ["steady", "changing", "going"]), message="the programs")
    write(files, PROGRAMS.replace('MODE = "one"', 'MODE = "two"').replace(
        '[workers.going]\ncommand = ["sleep", "1002"]\n', '[workers.added]\ncommand = ["sleep", "1003"]\n'))
    proc.signal(signal.SIGHUP)
    after = wait_until(lambda: looping(proc, ["steady", "changing", "added"])
                       and infos(proc)["changing"]["pid"] != before["changing"]["pid"] and infos(proc),
                       message="the programs reloaded")
    assert after["steady"]["pid"] == before["steady"]["pid"]
    wait_until(lambda: gone(before["going"]["pid"]) and gone(before["changing"]["pid"]),
               message="the old programs to end")
    with open("/proc/%d/environ" % after["changing"]["pid"], "rb") as f:
        assert b"MODE=two" in f.read().split(b"\0")
    with open("/proc/%d/cmdline" % after["added"]["pid"], "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1003"]


def test_upgrade_and_version(files):
    write(files, BASE)
    assert run(gdaemon("--version"), files).stdout.startswith("gdaemon ")
    result = run(gdaemon("daemon.toml", "-d"), files)
    try:
        assert result.returncode == 0, result.stderr
        address = "unix://%s/daemon.sock" % files
        old = rpc(address, "daemon.status")["result"]["pid"]
        # The new daemon reads the file again: a worker added meanwhile runs in it.
        write(files, BASE + '\n[workers.fresh]\nclass = "fileworkers:Tick"\nforever = true\n')
        upgraded = run(gdaemon("daemon.toml", "--upgrade"), files, timeout=60)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        status = rpc(address, "daemon.status")["result"]
        assert status["pid"] != old and status["upgrades"] == 1
        assert "fresh" in rpc(address, "worker.list")["result"]
    finally:
        stopped = run(gdaemon("daemon.toml", "--stop"), files)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_a_changed_pool_is_replaced_one_instance_at_a_time_refusing_no_connection(files, spawn):
    port = free_port()
    with open(os.path.join(EXAMPLES, "fd3_server.py")) as f:
        server = f.read()
    with open(os.path.join(files, "fd3_server.py"), "w") as f:
        f.write(server)
    web = """
[daemon]
shutdowntimeout = 5

[workers.web]
command = ["%s", "fd3_server.py"]
cwd = "."
instances = 3
listen = "tcp://127.0.0.1:%d"
env = {MODE = "%%s"}
""" % (sys.executable, port)
    write(files, web % "one")
    proc = spawn(gdaemon("daemon.toml", "-f"))
    before = wait_until(lambda: looping(proc, ["web.0", "web.1", "web.2"]), message="the pool")
    failures, answers, stop = [], [], threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                answers.append(_get(port)[1])
            except OSError as exc:
                failures.append(repr(exc))
    thread = threading.Thread(target=hammer)
    thread.start()
    events = proc.connect()
    try:
        assert events.result("events.subscribe", [["worker.state"]]) is True
        wait_until(lambda: len(answers) > 5, message="answers before the reload")
        write(files, web % "two")
        proc.signal(signal.SIGHUP)
        # One at a time: never two instances down together.
        down, most, looped = set(), 0, set()
        while looped != {"web.0", "web.1", "web.2"}:
            message = events.read()
            assert message is not None, "connection closed during the reload"
            data = message["params"]["data"]
            if data["status_name"] == "LOOPING":
                down.discard(data["name"])
                looped.add(data["name"])
            else:
                down.add(data["name"])
            most = max(most, len(down))
        assert most == 1
        after = wait_until(lambda: (lambda found: found if found and all(
            found[name]["pid"] != before[name]["pid"] for name in found) else None)(
                looping(proc, ["web.0", "web.1", "web.2"])), timeout=30, message="every instance replaced")
        count = len(answers)
        wait_until(lambda: len(answers) > count + 5, message="answers after the reload")
    finally:
        events.close()
        stop.set()
        thread.join(10)
    assert failures == []
    assert all(info["restarts"] == 1 for info in after.values())
    for info in after.values():
        with open("/proc/%d/environ" % info["pid"], "rb") as f:
            assert b"MODE=two" in f.read().split(b"\0")
    output = proc.output()
    assert "reload: replacing worker web" in output and "one instance at a time" in output


def test_a_worker_stopped_on_request_stays_stopped_when_its_table_changes(files, spawn):
    write(files, PROGRAMS)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    wait_until(lambda: looping(proc, ["steady", "changing", "going"]), message="the programs")
    assert proc.result("worker.stop", ["changing"]) is True
    wait_until(lambda: infos(proc)["changing"]["status_name"] == "STOPPED", message="changing stopped")
    write(files, PROGRAMS.replace('MODE = "one"', 'MODE = "two"'))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "reload: done: 0 workers removed, 1 changed, 0 added" in proc.output(),
               message="the reload")
    assert "is not LOOPING" not in proc.output()
    assert infos(proc)["changing"]["status_name"] == "STOPPED"
    # Started again, it is the new one.
    proc.result("worker.start", ["changing"])
    info = wait_until(lambda: (lambda i: i if i["status_name"] == "LOOPING" else None)(infos(proc)["changing"]),
                      message="changing started")
    with open("/proc/%d/environ" % info["pid"], "rb") as f:
        assert b"MODE=two" in f.read().split(b"\0")


def test_a_reload_that_install_would_refuse_changes_nothing(files, spawn):
    write(files, BASE)
    proc = spawn(gdaemon("daemon.toml", "-f"))
    before = wait_until(lambda: looping(proc, ["steady", "pool.0", "pool.1", "going", "changing"]),
                        message="the workers of the file")
    # Well-formed, but install() refuses limits for a greenlet worker.
    write(files, BASE.replace('class = "fileworkers:GTick"\n', 'class = "fileworkers:GTick"\nrlimits = {nofile = 100}\n')
          .replace("instances = 2", "instances = 3"))
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused, nothing changed" in proc.output(), message="the refusal")
    assert "greenlet" in [line for line in proc.output().splitlines() if "reload refused" in line][0]
    after = infos(proc)
    assert {n: i["pid"] for n, i in after.items()} == {n: i["pid"] for n, i in before.items()}
    result = run(gdaemon("--check", "daemon.toml"), files)
    assert result.returncode == 1 and "greenlet" in result.stdout
