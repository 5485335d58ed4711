"""A daemon described in a TOML file (issue 17): reading and checking it, nothing started.

Every problem is one line naming its table and key; a file with several
problems names them all; start order follows ``after``; relative paths
resolve against the file's directory; Python worker classes are imported
from that directory.
"""

import os
import textwrap

import pytest

from gdaemon import ConfigError
from gdaemon.daemonfile import DaemonFileError, load, parse, parse_size, signal_name

WORKER_MODULE = '''\
from gdaemon import GreenletWorker, Worker


class Tick(Worker):
    def loop(self):
        pass


class GTick(GreenletWorker):
    def loop(self):
        pass


class NotAWorker:
    pass
'''


@pytest.fixture
def folder(tmp_path):
    """A directory holding ``dfworkers.py`` (worker classes) for daemon files."""
    (tmp_path / "dfworkers.py").write_text(WORKER_MODULE)
    return tmp_path


def write(folder, text, name="daemon.toml"):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(folder, text):
    with pytest.raises(DaemonFileError) as info:
        load(write(folder, text))
    return info.value.problems


def test_a_good_file_gives_config_workers_and_start_order(folder):
    spec = load(write(folder, """
        [daemon]
        description = "Web stack"
        socketmode = 0o660

        [workers.web]
        command = ["python3", "-m", "http.server"]
        instances = 4
        after = ["cache"]
        maxrss = "512M"

        [workers.cache]
        command = ["sleep", "1000"]

        [workers.mailer]
        class = "dfworkers:Tick"
        looptime = 5
        forever = true
    """))
    assert spec.config["description"] == "Web stack"
    assert spec.config["socketmode"] == 0o660
    assert spec.order == ["cache", "mailer", "web"]
    web = spec.workers["web"]
    assert web.kind == "exec"
    assert web.options == {"forever": True, "instances": 4, "after": ["cache"], "maxrss": 512 << 20}
    assert web.describe() == "web (exec, 4 instances, after cache)"
    # forever defaults to true for programs only.
    assert spec.workers["cache"].options == {"forever": True}
    mailer = spec.workers["mailer"]
    assert mailer.kind == "class" and mailer.worker_class.__name__ == "Tick"
    assert mailer.options == {"looptime": 5, "forever": True}
    assert mailer.describe() == "mailer (class dfworkers:Tick)"


def test_python_workers_are_constructed_with_the_table_name(folder):
    spec = load(write(folder, """
        [workers.ticker]
        class = "dfworkers:GTick"
    """))
    worker = spec.workers["ticker"].make()
    assert worker.name == "ticker"
    assert type(worker).__name__ == "GTick"


def test_relative_paths_resolve_against_the_files_directory(folder, monkeypatch):
    monkeypatch.chdir("/")
    sub = folder / "etc"
    sub.mkdir()
    spec = load(write(sub, """
        [daemon]
        sockethandler = "unix://run/d.sock"
        pidfile = "d.pid"
        logfile = "../log/d.log"

        [workers.web]
        command = ["true"]
        cwd = "www"
        listen = "unix://web.sock"
    """))
    config = spec.resolved_config()
    assert config["basepath"] == str(sub)
    assert config["sockethandler"] == "unix://%s/run/d.sock" % sub
    assert config["pidfile"] == "%s/d.pid" % sub
    assert os.path.normpath(config["logfile"]) == "%s/log/d.log" % folder
    web = spec.workers["web"]
    assert web.table["cwd"] == "%s/www" % sub
    assert web.options["listen"] == "unix://%s/web.sock" % sub


def test_a_basepath_given_is_relative_to_the_file(folder):
    spec = load(write(folder, """
        [daemon]
        basepath = "var"
        pidfile = "d.pid"
    """))
    assert spec.resolved_config()["pidfile"] == "%s/var/d.pid" % folder


def test_every_problem_is_named_by_table_and_key(folder):
    found = problems(folder, """
        [daemon]
        socketmode = "0600"
        colour = "blue"
        sockethandler = "ftp://host"
        arguments = "Usage: x"

        [workers.both]
        command = ["x"]
        class = "dfworkers:Tick"

        [workers.neither]
        looptime = 1

        [workers.web]
        command = []
        maxrss = "lots"
        rlimits = {nofle = 3}
        stopsignal = "FOO"
        loptime = 3
        instances = -1
        forever = "yes"
        timeout = 0

        [workers.mailer]
        class = "dfworkers:NotAWorker"
        env = {A = "b"}

        [workers.ghost]
        class = "nosuchmodule:Worker"

        [workers.typo]
        class = "dfworkers:Tock"

        [workers.shell]
        command = "echo hi"
    """)
    expected = [
        ("daemon.socketmode:", "expected int"),
        ("daemon.colour:", "unknown key"),
        ("daemon.sockethandler:", "scheme"),
        ("daemon.arguments:", "not in a daemon file"),
        ("workers.both:", "command and class exclude each other"),
        ("workers.neither:", "needs command"),
        ("workers.web.command:", "empty"),
        ('workers.web.maxrss:', 'expected a size like "512M", got "lots"'),
        ("workers.web.rlimits:", "unknown limit 'nofle' (did you mean 'nofile'?)"),
        ("workers.web.stopsignal:", "unknown signal 'FOO'"),
        ("workers.web.loptime:", "unknown key (did you mean 'looptime'?)"),
        ("workers.web.instances:", "expected an integer >= 0, got -1"),
        ("workers.web.forever:", 'expected true or false, got "yes"'),
        ("workers.web.timeout:", "expected a positive number"),
        ("workers.mailer.class:", "dfworkers:NotAWorker is not a gdaemon.Worker subclass"),
        ("workers.mailer.env:", "only for programs"),
        ("workers.ghost.class:", "cannot import nosuchmodule"),
        ("workers.typo.class:", "dfworkers has no Tock"),
        ("workers.shell.command:", "a string needs shell = true"),
    ]
    for where, what in expected:
        assert any(p.startswith(where) and what in p for p in found), (where, what, found)
    assert len(found) == len(expected), found
    assert all("\n" not in p for p in found)


def test_after_names_unknown_workers_and_cycles(folder):
    found = problems(folder, """
        [workers.a]
        class = "dfworkers:Tick"
        after = ["c"]

        [workers.b]
        class = "dfworkers:Tick"
        after = ["a", "nope"]
        maxloops = 0

        [workers.c]
        class = "dfworkers:Tick"
        after = ["b"]

        [workers.d]
        class = "dfworkers:Tick"
        after = ["d"]
    """)
    assert "workers.b.after: no worker 'nope' in this file" in found
    assert "workers.d.after: a worker cannot start after itself" in found
    assert any(p.startswith("workers.a.after: workers wait for each other in a cycle: a -> c -> b -> a")
               for p in found), found
    # A table with another problem (b's maxloops) still has its after checked.
    assert any(p.startswith("workers.b.maxloops:") for p in found)


def test_start_order_puts_each_worker_after_those_it_names(folder):
    spec = load(write(folder, """
        [workers.app]
        command = ["true"]
        after = ["db", "cache"]
        [workers.db]
        command = ["true"]
        [workers.proxy]
        command = ["true"]
        after = "app"
        [workers.cache]
        command = ["true"]
        after = ["db"]
    """))
    assert spec.order == ["db", "cache", "app", "proxy"]
    assert spec.workers["proxy"].after == ("app",)


def test_a_toml_syntax_error_is_one_line_with_its_line_number(folder):
    found = problems(folder, """\
        [daemon]
        description = "x"
        oops =
    """)
    assert len(found) == 1
    assert found[0].startswith("invalid TOML:") and "line 3" in found[0], found


def test_unknown_tables_and_wrong_shapes(folder):
    found = problems(folder, """
        workers = 3
        [deamon]
        description = "x"
    """)
    assert any(p.startswith("deamon: unknown table") and "did you mean 'daemon'" in p for p in found), found
    assert any(p.startswith("workers: expected tables") for p in found), found


def test_the_error_is_a_config_error_of_one_line(folder):
    with pytest.raises(ConfigError) as info:
        load(write(folder, """
            [workers.a]
            class = "x"
            [workers.b]
            command = []
        """))
    message = str(info.value)
    assert "\n" not in message
    assert 'workers.a.class: expected "module:Class", got "x"' in message
    assert "and 1 more problem" in message


def test_a_missing_file_is_one_problem(folder):
    with pytest.raises(DaemonFileError) as info:
        load(str(folder / "nope.toml"))
    assert info.value.problems == ["cannot read the file: No such file or directory"]


def test_the_daemon_table_alone_ignores_worker_problems(folder):
    path = write(folder, """
        [daemon]
        pidfile = "x.pid"
        [workers.a]
        class = "nosuchmodule:A"
    """)
    spec = load(path, workers=False)
    assert spec.workers == {} and spec.resolved_config()["pidfile"] == "%s/x.pid" % folder
    with pytest.raises(DaemonFileError):
        load(path)


def test_tls_needs_its_certificate_and_public_addresses_a_token(folder):
    found = problems(folder, """
        [daemon]
        sockethandler = "tls://127.0.0.1:4443"
    """)
    assert found == ["daemon: sockethandler: tls:// needs certfile and keyfile"]
    found = problems(folder, """
        [daemon]
        sockethandler = "tcp://0.0.0.0:4000"
    """)
    assert found == ["daemon.sockethandler: a non-loopback address needs token (or insecure = true)"]
    found = problems(folder, """
        [workers.web]
        command = ["x"]
        listen = "tcp://0.0.0.0:8000"
    """)
    assert len(found) == 1 and found[0].startswith("workers.web.listen:") and "insecure" in found[0]


def test_two_workers_cannot_listen_on_one_address(folder):
    found = problems(folder, """
        [workers.a]
        command = ["x"]
        listen = "tcp://127.0.0.1:8000"
        [workers.b]
        command = ["x"]
        listen = "tcp://127.0.0.1:8000"
    """)
    assert found == ["workers.b.listen: tcp://127.0.0.1:8000 is the listen of workers.a too"]


def test_identity_limits_and_recycling_options(folder):
    spec = load(write(folder, """
        [workers.web]
        command = ["x"]
        user = "root"
        group = 0
        rlimits = {nofile = 4096, core = [0, "unlimited"], NPROC = 100}
        maxrss = 1048576
        maxloops = 1000
        maxloopsjitter = 50
        maxage = 3600
        maxagejitter = 60.5
        stopsignal = "sigint"
        env = {MODE = "prod"}
        shell = false
    """))
    web = spec.workers["web"]
    assert web.options["rlimits"] == {"nofile": 4096, "core": (0, "unlimited"), "nproc": 100}
    assert web.options["user"] == "root" and web.options["group"] == 0
    assert web.options["maxrss"] == 1048576
    assert web.table["stopsignal"] == "INT" and web.table["env"] == {"MODE": "prod"}
    found = problems(folder, """
        [workers.web]
        command = ["x"]
        user = "no-such-user-here"
        group = "root"
        rlimits = {nofile = [10, 5]}
        maxloopsjitter = 3
        env = {N = 3}
    """)
    assert "workers.web.user: unknown user 'no-such-user-here'" in found
    assert "workers.web.rlimits: rlimit nofile: soft limit 10 is above the hard limit 5" in found
    assert "workers.web.maxloopsjitter: needs maxloops" in found
    assert "workers.web.env.N: expected a string, got an integer 3" in found


def test_too_many_instances_for_workerlimit(folder):
    found = problems(folder, """
        [daemon]
        workerlimit = 3
        [workers.a]
        command = ["x"]
        instances = 4
    """)
    assert found == ["workers: 4 instances in all, past daemon.workerlimit (3)"]


@pytest.mark.parametrize("text,size", [(1, 1), ("512M", 512 << 20), ("2G", 2 << 30), ("64k", 64 << 10),
                                       ("512MB", 512 << 20), ("1.5GiB", 3 << 29), ("100", 100)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "12X", 0, -1, True, "0M", 1.5])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("value,name", [("TERM", "TERM"), ("SIGHUP", "HUP"), ("int", "INT"), (9, "KILL")])
def test_signal_names(value, name):
    assert signal_name(value) == name


@pytest.mark.parametrize("value", ["FOO", "SIG", "", 0, 1000, True, "_DFL", 1.5])
def test_bad_signal_names(value):
    with pytest.raises(ValueError):
        signal_name(value)


def test_changes_between_two_readings(folder):
    path = write(folder, """
        [workers.a]
        class = "dfworkers:Tick"
        instances = 2
        [workers.b]
        command = ["x"]
    """)
    first = load(path)
    write(folder, """
        [workers.a]
        class = "dfworkers:Tick"
        instances = 3
        [workers.b]
        command = ["x", "y"]
    """)
    second = load(path)
    assert first.workers["a"] != second.workers["a"]
    assert first.workers["a"].same_but_instances(second.workers["a"])
    assert not first.workers["b"].same_but_instances(second.workers["b"])
    assert load(path).workers["b"] == second.workers["b"]


def test_parse_takes_text_and_names_nothing_it_did_not_read(folder):
    spec = parse('[daemon]\ndescription = "x"\n', os.path.join(str(folder), "virtual.toml"))
    assert spec.path == os.path.join(str(folder), "virtual.toml")
    assert spec.order == []
