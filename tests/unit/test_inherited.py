"""gdaemon.inherited: reading the sockets a parent passed from the environment (issue 16)."""

import os
import socket

import pytest

from gdaemon.errors import ProcessError
from gdaemon.inherited import InheritedSockets, _systemd_names, format_fds
from gdaemon.wire.address import parse_address


@pytest.mark.parametrize("value,count,names", [
    ("rpc:http", 2, ["rpc", "http"]),
    ("rpc:pool:web:http", 3, ["rpc", "pool:web", "http"]),
    ("pool:web", 1, ["pool:web"]),
    ("gdaemon.socket:gdaemon.socket", 2, ["gdaemon.socket", "gdaemon.socket"]),
    ("", 2, ["", ""]),
    ("rpc", 3, ["rpc", "", ""]),
])
def test_systemd_names(value, count, names):
    assert _systemd_names(value, count) == names


def test_gdaemon_fds_round_trip_and_removal():
    a, b = socket.socketpair()
    try:
        environ = {"GDAEMON_FDS": format_fds([("rpc", a.fileno()), ("pool:web", b.fileno())]),
                   "GDAEMON_FDS_KEEP": "rpc", "OTHER": "1"}
        found = InheritedSockets.from_environ(environ)
        assert environ == {"OTHER": "1"}
        assert [(s.name, s.fd, s.origin, s.owns_file) for s in found.pending] == [
            ("rpc", a.fileno(), "upgrade", False), ("pool:web", b.fileno(), "upgrade", True)]
    finally:
        a.close()
        b.close()


def test_listen_fds_for_another_pid_are_ignored_but_removed():
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "rpc:http"}
    assert InheritedSockets.from_environ(environ).pending == []
    assert environ == {}


def test_listen_fds_for_this_pid():
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "rpc:x.socket"}
    found = InheritedSockets.from_environ(environ)
    assert [(s.fd, s.name, s.origin, s.owns_file) for s in found.pending] == [
        (3, "rpc", "systemd", False), (4, None, "systemd", False)]


def test_bad_values_name_the_variable():
    with pytest.raises(ProcessError, match="GDAEMON_FDS"):
        InheritedSockets.from_environ({"GDAEMON_FDS": "rpc=three"})
    with pytest.raises(ProcessError, match="LISTEN_FDS"):
        InheritedSockets.from_environ({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"})


def test_unnamed_socket_taken_by_address_and_leftover_named_in_the_error(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stray = socket.socket()
    stray.bind(("127.0.0.1", 0))
    stray.listen(1)
    stray_port = stray.getsockname()[1]
    environ = {"GDAEMON_FDS": "x=%d,y=%d" % (os.dup(listener.fileno()), os.dup(stray.fileno()))}
    found = InheritedSockets.from_environ(environ)
    try:
        assert found.take("http", parse_address("tcp://localhost:%d" % (port + 1))) is None
        taken = found.take("http", parse_address("tcp://127.0.0.1:%d" % port))
        assert taken is not None and taken.socket().getsockname()[1] == port
        with pytest.raises(ProcessError, match="tcp://127.0.0.1:%d" % stray_port):
            found.check_all_taken()
    finally:
        listener.close()
        stray.close()
        if taken is not None:
            taken.socket().close()
