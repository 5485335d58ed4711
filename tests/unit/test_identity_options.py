"""Identities and resource limits as install() and the config take them (gdaemon.identity)."""

import os
import pwd
import resource

import pytest

from gdaemon.errors import ConfigError, WorkerError
from gdaemon.identity import Identity, check_switchable, parse_rlimits, resolve_identity

NOBODY = pwd.getpwnam("nobody")


def test_a_user_name_gives_its_uid_primary_group_and_groups():
    identity = resolve_identity("nobody", None)
    assert (identity.uid, identity.gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert NOBODY.pw_gid in identity.groups
    assert identity.groups == tuple(os.getgrouplist("nobody", NOBODY.pw_gid))


def test_numeric_ids_need_no_database_entry_but_a_group_then():
    assert resolve_identity(NOBODY.pw_uid, None).uid == NOBODY.pw_uid
    anonymous = resolve_identity(54321, 54321)
    assert (anonymous.uid, anonymous.gid, anonymous.groups) == (54321, 54321, (54321,))
    with pytest.raises(ConfigError, match="54321 has no entry in the user database: give a group"):
        resolve_identity(54321, None)


def test_unknown_names_and_wrong_types_name_the_problem():
    with pytest.raises(WorkerError, match=r"^worker 'w': unknown user 'no-such-user'$"):
        resolve_identity("no-such-user", None, "worker 'w'", error=WorkerError)
    with pytest.raises(ConfigError, match=r"^unknown group 'no-such-group'$"):
        resolve_identity("nobody", "no-such-group")
    with pytest.raises(ConfigError, match="user must be a name or a numeric id, got True"):
        resolve_identity(True, None)
    with pytest.raises(ConfigError, match="must not be empty"):
        resolve_identity("", None)
    assert resolve_identity(None, None) is None


def test_root_may_take_any_identity():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    check_switchable(resolve_identity("nobody", None))


def test_without_root_only_the_current_identity_is_accepted():
    current = Identity(os.geteuid(), os.getegid(), os.getgroups(), "me")
    check_switchable(current)
    other = Identity(os.geteuid() + 1, os.getegid(), [], "other")
    if os.geteuid() == 0:
        check_switchable(other)  # root: anything goes
        return
    with pytest.raises(WorkerError, match="cannot switch to user other: the daemon runs as uid"):
        check_switchable(other, "worker 'w'", error=WorkerError)


def test_rlimits_take_an_int_or_a_pair_or_unlimited():
    limits = {limit.name: (limit.soft, limit.hard) for limit in parse_rlimits(
        {"nofile": 1000, "core": (0, 0), "fsize": ("unlimited", "unlimited"),
         "NPROC": (100, 200)}, "worker 'w'")}
    inf = resource.RLIM_INFINITY
    assert limits == {"nofile": (1000, 1000), "core": (0, 0), "fsize": (inf, inf),
                      "nproc": (100, 200)}
    assert parse_rlimits(None, "worker 'w'") == ()


@pytest.mark.parametrize("rlimits, message", [
    ({"files": 10}, r"worker 'w': unknown rlimit 'files' \(known: .*nofile"),
    ({"nofile": -5}, "worker 'w': rlimit nofile: expected an integer >= 0 or \"unlimited\", got -5"),
    ({"nofile": 1.5}, "rlimit nofile: expected an integer"),
    ({"nofile": True}, "rlimit nofile: expected an integer"),
    ({"nofile": (1, 2, 3)}, r"rlimit nofile: expected an int or a \(soft, hard\) pair"),
    ({"nofile": (200, 100)}, "rlimit nofile: soft limit 200 is above the hard limit 100"),
    ({"core": ("unlimited", 0)}, "rlimit core: soft limit unlimited is above the hard limit 0"),
    ([("nofile", 1)], "rlimits must be a dict"),
])
def test_bad_rlimits_name_the_worker_and_the_limit(rlimits, message):
    with pytest.raises(WorkerError, match=message):
        parse_rlimits(rlimits, "worker 'w'")


def test_nofile_above_what_the_kernel_allows_is_refused_at_once():
    with open("/proc/sys/fs/nr_open") as f:
        ceiling = int(f.read())
    if os.geteuid() == 0:
        match = r"rlimit nofile: %d is above the kernel's fs.nr_open \(%d\)" % (ceiling + 1, ceiling)
    else:
        match = "rlimit nofile: hard limit %d is above the current" % (ceiling + 1)
    with pytest.raises(WorkerError, match=match):
        parse_rlimits({"nofile": ceiling + 1}, "worker 'w'")


def test_a_process_that_is_not_root_may_only_name_itself():
    """In a child that dropped to nobody: only nobody is accepted, as user or group."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    nobody = resolve_identity("nobody", None)
    root = resolve_identity("root", None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        report = []
        try:
            nobody.switch()
            check_switchable(nobody)
            report.append("nobody ok")
            for other in (root, resolve_identity(None, 0)):
                try:
                    check_switchable(other, "worker 'w'", error=WorkerError)
                    report.append("accepted")
                except WorkerError as exc:
                    report.append(str(exc))
        finally:
            os.write(write, "\n".join(report).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        lines = f.read().splitlines()
    os.waitpid(pid, 0)
    uid = NOBODY.pw_uid
    assert lines == ["nobody ok",
                     "worker 'w': cannot switch to user root: the daemon runs as uid %d, not root" % uid,
                     "worker 'w': cannot switch to group 0: the daemon runs as gid %d, not root"
                     % NOBODY.pw_gid]
