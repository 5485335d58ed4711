"""Configuration keys, their exact defaults and their checks (docs/reference/config.rst).

Written from the documentation alone: every key of the table with its default, a
:class:`gdaemon.ConfigError` naming the key for unknown keys and values of the
wrong type (booleans are not integers), and the parsing of endpoint addresses.
"""

import os

import pytest

from gdaemon.config import Config, parse_address
from gdaemon.errors import ConfigError

#: The documented defaults, key by key.
DOCUMENTED_DEFAULTS = {
    "description": "gdaemon",
    "sockethandler": "unix://daemon.sock",
    "socketmode": 0o600,
    "socketbuffer": 1024,
    "socketmaxmessage": 1048576,
    "sockettimeout": 2,
    "socketidle": 300,
    "socketmaxconnections": 64,
    "socketmaxbatch": 1000,
    "socketauthtimeout": 5,
    "websockethandler": None,
    "websocketorigins": None,
    "token": None,
    "insecure": False,
    "certfile": None,
    "keyfile": None,
    "pidfile": "daemon.pid",
    "logfile": "daemon.log",
    "niceness": 0,
    "umask": 0o022,
    "arguments": None,
    "shutdowntimeout": 10,
    "restartintensity": 5,
    "restartperiod": 10,
    "user": None,
    "group": None,
    "rssinterval": 1,
}


@pytest.mark.parametrize("key", sorted(DOCUMENTED_DEFAULTS))
def test_default_of_every_key(key):
    config = Config()
    expected = DOCUMENTED_DEFAULTS[key]
    assert key in config
    assert config[key] == expected
    # Exactly the value of the table: False is not 0, None is not "".
    assert type(config[key]) is type(expected)
    assert getattr(config, key) == expected


def test_empty_dict_and_none_give_the_same_defaults():
    assert {k: Config()[k] for k in DOCUMENTED_DEFAULTS} == {k: Config({})[k] for k in DOCUMENTED_DEFAULTS}


def test_given_values_override_defaults_and_others_stay_default():
    config = Config({"description": "Echo Daemon", "socketbuffer": 4096, "sockettimeout": 0.5})
    assert config.description == "Echo Daemon"
    assert config.socketbuffer == 4096
    assert config.sockettimeout == 0.5
    assert config.socketmaxconnections == 64
    assert config.pidfile == "daemon.pid"


@pytest.mark.parametrize("key", ["bogus", "socketbufer", "Description", "looptime", "sockethandlers"])
def test_unknown_key_is_rejected_naming_it(key):
    with pytest.raises(ConfigError) as info:
        Config({key: 1})
    assert key in str(info.value)


def test_config_error_is_a_gdaemon_error():
    import gdaemon
    assert issubclass(ConfigError, gdaemon.GDaemonError)
    assert gdaemon.ConfigError is ConfigError


#: (key, a value of a wrong type).
WRONG_TYPES = [
    ("description", 42),
    ("description", None),
    ("sockethandler", 10042),
    ("socketmode", "0600"),
    ("socketmode", 1.5),
    ("socketbuffer", "1024"),
    ("socketmaxmessage", [1]),
    ("sockettimeout", "2"),
    ("socketidle", "300"),
    ("socketmaxconnections", "64"),
    ("socketmaxconnections", 2.5),
    ("socketmaxbatch", "1000"),
    ("socketmaxbatch", 2.5),
    ("socketmaxbatch", None),
    ("socketauthtimeout", "5"),
    ("socketauthtimeout", None),
    ("websockethandler", 8080),
    ("websocketorigins", "http://localhost"),
    ("token", 1234),
    ("insecure", "yes"),
    ("insecure", 1),
    ("insecure", None),
    ("certfile", 1),
    ("keyfile", 1),
    ("pidfile", 1),
    ("pidfile", None),
    ("logfile", 1),
    ("niceness", "5"),
    ("niceness", 1.5),
    ("umask", "022"),
    ("arguments", 1),
    ("shutdowntimeout", "10"),
    ("restartintensity", "5"),
    ("restartintensity", 2.5),
    ("restartperiod", "10"),
]


@pytest.mark.parametrize("key,value", WRONG_TYPES, ids=["%s=%r" % kv for kv in WRONG_TYPES])
def test_wrong_type_is_rejected_naming_the_key(key, value):
    with pytest.raises(ConfigError) as info:
        Config({key: value})
    assert key in str(info.value)


INT_KEYS = ["socketmode", "socketbuffer", "socketmaxmessage", "sockettimeout", "socketidle",
            "socketmaxconnections", "socketmaxbatch", "socketauthtimeout", "niceness", "umask",
            "shutdowntimeout",
            "restartintensity", "restartperiod"]


@pytest.mark.parametrize("key", INT_KEYS)
@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_integers(key, value):
    with pytest.raises(ConfigError) as info:
        Config({key: value})
    assert key in str(info.value)


@pytest.mark.parametrize("key", ["sockettimeout", "socketidle", "socketauthtimeout", "shutdowntimeout",
                                 "restartperiod"])
def test_seconds_accept_floats_and_ints(key):
    assert Config({key: 0.5})[key] == 0.5
    assert Config({key: 3})[key] == 3


def test_values_of_the_right_type_are_accepted():
    values = {
        "description": "Echo Daemon",
        "sockethandler": "tcp://127.0.0.1:10042",
        "socketmode": 0o660,
        "socketbuffer": 4096,
        "socketmaxmessage": 2048,
        "sockettimeout": 1,
        "socketidle": 10.5,
        "socketmaxconnections": 2,
        "socketmaxbatch": 10,
        "socketauthtimeout": 0.5,
        "websockethandler": "tcp://127.0.0.1:8080",
        "websocketorigins": ["http://localhost:8080"],
        "token": "s3cret",
        "insecure": True,
        "pidfile": "/tmp/x.pid",
        "logfile": "x.log",
        "niceness": 5,
        "umask": 0o077,
        "arguments": "Usage: prog [-d | -f]",
        "shutdowntimeout": 1,
        "restartintensity": 3,
        "restartperiod": 2.5,
    }
    config = Config(values)
    for key, value in values.items():
        assert config[key] == value


@pytest.mark.parametrize("key,value", [("socketmaxbatch", 0), ("socketmaxbatch", -1),
                                       ("socketauthtimeout", 0), ("socketauthtimeout", -0.5)])
def test_limits_must_be_positive(key, value):
    with pytest.raises(ConfigError) as info:
        Config({key: value})
    assert key in str(info.value)


def test_optional_keys_accept_none():
    config = Config({"websockethandler": None, "token": None, "arguments": None,
                     "certfile": None, "keyfile": None, "websocketorigins": None})
    assert config.token is None and config.websockethandler is None


@pytest.mark.parametrize("key,value", [
    ("sockethandler", "daemon.sock"),          # no scheme
    ("sockethandler", "http://127.0.0.1:80"),  # unknown scheme
    ("sockethandler", "tcp://127.0.0.1"),      # no port
    ("sockethandler", "tcp://127.0.0.1:port"),
    ("sockethandler", "unix://"),
    ("websockethandler", "unix://ws.sock"),    # websocket is tcp:// only (docs/reference/config.rst)
])
def test_bad_addresses_are_rejected_naming_the_key(key, value):
    with pytest.raises(ConfigError) as info:
        Config({key: value})
    assert key in str(info.value)


def test_tls_needs_certfile_and_keyfile():
    with pytest.raises(ConfigError):
        Config({"sockethandler": "tls://127.0.0.1:10043"})


# ---------------------------------------------------------------------------
# Address parsing

def test_parse_unix_relative_and_absolute():
    a = parse_address("unix://daemon.sock")
    assert (a.scheme, a.path) == ("unix", "daemon.sock")
    b = parse_address("unix:///run/gdaemon/daemon.sock")
    assert (b.scheme, b.path) == ("unix", "/run/gdaemon/daemon.sock")


def test_parse_tcp():
    a = parse_address("tcp://127.0.0.1:10042")
    assert (a.scheme, a.host, a.port) == ("tcp", "127.0.0.1", 10042)
    assert isinstance(a.port, int)


def test_parse_tcp_hostname_and_ipv6():
    assert parse_address("tcp://localhost:1").host == "localhost"
    v6 = parse_address("tcp://[::1]:10042")
    assert (v6.host, v6.port) == ("::1", 10042)


def test_parse_tls():
    a = parse_address("tls://127.0.0.1:443")
    assert (a.scheme, a.host, a.port) == ("tls", "127.0.0.1", 443)


# ---------------------------------------------------------------------------
# Loopback is decided on the resolved IP address, never on the spelling
# (docs/reference/rpc.rst, Authentication)

@pytest.mark.parametrize("text", [
    "unix://daemon.sock", "tcp://127.0.0.1:1", "tcp://127.5.6.7:1", "tcp://[::1]:1",
    "tcp://[::ffff:127.0.0.1]:1",         # IPv4-mapped loopback
    "tcp://localhost:1",                  # a name, resolved through /etc/hosts
    "tcp://0x7f000001:1", "tcp://2130706433:1", "tcp://127.1:1",  # other spellings of 127.0.0.1
    "tls://127.0.0.1:443",
])
def test_loopback_addresses(text):
    assert parse_address(text).is_loopback is True


@pytest.mark.parametrize("text", [
    "tcp://127.attacker.example:80",      # looks like 127.*, is whatever its DNS says (here: nothing)
    "tcp://127.0.0.1.attacker.example:80",
    "tcp://localhost.attacker.example:80",
    "tcp://0.0.0.0:80", "tcp://[::]:80",  # every interface
    "tcp://10.0.0.1:80", "tcp://[2001:db8::1]:80", "tcp://[::ffff:10.0.0.1]:80",
    "tcp://no-such-host.invalid:80",      # does not resolve: not loopback
])
def test_non_loopback_addresses(text):
    assert parse_address(text).is_loopback is False


def test_resolve_gives_ip_addresses():
    import ipaddress
    assert parse_address("tcp://127.0.0.1:1").resolve() == [ipaddress.ip_address("127.0.0.1")]
    assert ipaddress.ip_address("127.0.0.1") in parse_address("tcp://localhost:1").resolve()
    assert parse_address("tcp://0x7f000001:1").resolve() == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(OSError):
        parse_address("tcp://no-such-host.invalid:80").resolve()


@pytest.mark.parametrize("text", ["", "daemon.sock", "tcp://", "tcp://host", "tcp://:80",
                                  "ftp://host:21", "tcp://host:99999", "unix://"])
def test_parse_rejects_malformed_addresses(text):
    with pytest.raises(ConfigError):
        parse_address(text)


# ---------------------------------------------------------------------------
# Through the public constructor: "rejected" when the daemon is constructed (docs/reference/config.rst).

def test_daemon_construction_rejects_unknown_key():
    from gdaemon import Daemon

    class D(Daemon):
        def setup(self):
            pass

    with pytest.raises(ConfigError) as info:
        D({"descripton": "typo"})
    assert "descripton" in str(info.value)


def test_daemon_construction_rejects_wrong_type():
    from gdaemon import Daemon

    class D(Daemon):
        def setup(self):
            pass

    with pytest.raises(ConfigError) as info:
        D({"socketmaxconnections": True})
    assert "socketmaxconnections" in str(info.value)


def test_daemon_resolves_relative_paths_against_the_current_directory(tmp_path, monkeypatch):
    from gdaemon import Daemon

    class D(Daemon):
        def setup(self):
            pass

    monkeypatch.chdir(tmp_path)
    daemon = D({"description": "paths", "pidfile": "run/x.pid", "sockethandler": "unix://x.sock"})
    assert isinstance(daemon.config, Config)
    base = os.path.realpath(str(tmp_path))
    assert os.path.realpath(daemon.config.pidfile) == os.path.join(base, "run", "x.pid")
    assert daemon.config.sockethandler.startswith("unix:///")
    assert os.path.realpath(daemon.config.sockethandler[len("unix://"):]) == os.path.join(base, "x.sock")
    assert os.path.realpath(daemon.config.logfile) == os.path.join(base, "daemon.log")


def test_daemon_logger_name_is_the_slug_of_the_description():
    from gdaemon import Daemon

    class D(Daemon):
        def setup(self):
            pass

    assert D({"description": "Echo Daemon"}).logger.name == "gdaemon.echo-daemon"


def test_every_key_has_a_meaning_for_the_reference():
    """The documentation's configuration reference is generated from SCHEMA."""
    from gdaemon.config import DEFAULTS, SCHEMA
    assert set(SCHEMA) == set(DEFAULTS)
    for name, key in SCHEMA.items():
        assert key.meaning.strip(), name
        assert key.default == DEFAULTS[name]
