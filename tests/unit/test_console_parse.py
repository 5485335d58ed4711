"""gdaemon.console.parse_arguments: docopt, with the last parse remembered."""

import pytest
from docopt import DocoptExit

from gdaemon import console
from gdaemon.echo import USAGE

ECHO_USAGE = USAGE.replace("{prog}", "gdaemon-echo")


@pytest.fixture
def docopt_calls(monkeypatch):
    calls = []
    real = console.docopt

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)
    monkeypatch.setattr(console, "docopt", counting)
    monkeypatch.setattr(console, "_last_parse", None)
    return calls


def test_the_same_command_line_is_parsed_once(docopt_calls):
    # gdaemon-echo reads -a and --http, then Daemon.init() parses the same argv.
    first = console.parse_arguments(ECHO_USAGE, ["-d", "-a", "unix:///tmp/x.sock"])
    second = console.parse_arguments(ECHO_USAGE, ["-d", "-a", "unix:///tmp/x.sock"])
    assert docopt_calls == [["-d", "-a", "unix:///tmp/x.sock"]]
    assert first == second and first["--daemon"] is True and first["--address"] == "unix:///tmp/x.sock"
    # Each caller gets a dict of its own.
    first["--daemon"] = False
    assert console.parse_arguments(ECHO_USAGE, ["-d", "-a", "unix:///tmp/x.sock"])["--daemon"] is True


def test_another_command_line_or_usage_is_parsed_again(docopt_calls):
    assert console.parse_arguments(ECHO_USAGE, ["-d"])["--daemon"] is True
    assert console.parse_arguments(ECHO_USAGE, ["-f"])["--foreground"] is True
    assert console.parse_arguments(ECHO_USAGE.replace("gdaemon-echo", "other"), ["-f"])["--foreground"] is True
    assert len(docopt_calls) == 3


def test_a_bad_command_line_raises_every_time(docopt_calls):
    for _ in range(2):
        with pytest.raises(DocoptExit):
            console.parse_arguments(ECHO_USAGE, ["--no-such-option"])
    assert len(docopt_calls) == 2
