"""``gdaemon FILE``: run the daemon a TOML file describes (see :mod:`gdaemon.daemonfile`).

::

    gdaemon --check stack.toml      # the workers in start order, or one line per problem
    gdaemon stack.toml -d           # start it (the console of every daemon: -f, --stop, --status...)
    gdaemon-ctl -a unix://daemon.sock workers
    kill -HUP $(cat daemon.pid)     # re-read the file: added, removed, changed workers

:class:`FileDaemon` is a :class:`~gdaemon.daemon.Daemon` whose workers come
from the file.  A reload (SIGHUP, ``daemon.reload``) reads the file again
and applies the difference without touching what did not change: removed
workers are stopped and uninstalled, changed ones replaced one instance at a
time (``WorkerManager.replace``; a change of ``instances`` alone scales the
pool), added ones installed and started in start order, each worker LOOPING
before the next.  A file that does not
check out is refused: the daemon goes on unchanged and logs why on one line.
"""

import inspect
import sys

from .lazy import collector_paused

with collector_paused():  # the daemon side, without the collector (gdaemon.lazy)
    from docopt import DocoptExit

    from . import daemonfile
    from .console import OPTIONS, USAGE, parse_arguments, report_usage_error, version_line
    from .daemon import Daemon
    from .errors import ConfigError, GDaemonError

__all__ = ["FileDaemon", "main", "check"]

#: What ``gdaemon`` adds to the options every console has.
CHECK_OPTION = "  --check            check FILE: print its workers in start order (exit 0) or its problems (exit 1)\n"


def usage():
    """The ``gdaemon`` command's usage: every console's usage for a FILE, and ``--check``."""
    commands = [line.split(None, 1)[1] for line in USAGE.split("Options:")[0].splitlines()
                if line.strip().startswith("{prog} ")]
    with_file = ["{prog} FILE " + words for words in commands if not words.startswith(("-h", "--version"))]
    without = ["{prog} " + words for words in commands if words.startswith(("-h", "--version"))]
    lines = with_file + ["{prog} --check FILE"] + without
    text = "Usage:\n%s\n\nOptions:\n%s%s" % ("\n".join("  " + line for line in lines), OPTIONS, CHECK_OPTION)
    return text.replace("{prog}", "gdaemon")


class FileDaemon(Daemon):
    """A daemon whose configuration and workers come from a checked daemon file.

    :param spec: a :class:`~gdaemon.daemonfile.DaemonFile` (``daemonfile.load(path)``).
    :raises ConfigError: a worker class that cannot be constructed.
    """

    def __init__(self, spec, argv=None):
        super().__init__(dict(spec.config, arguments=usage()), argv)
        self.spec = spec
        for name in spec.order:
            self._install(spec.workers[name])

    def setup(self):
        """Nothing beyond the built-in methods: the workers come from the file."""

    def _install(self, worker_spec):
        supported = inspect.signature(self.workers.install).parameters
        for key in worker_spec.options:
            if key not in supported:
                raise ConfigError("workers.%s.%s: not supported by this version of gdaemon"
                                  % (worker_spec.name, key))
        self.workers.install(worker_spec.make(), **worker_spec.options)

    # -- reload ----------------------------------------------------------------------

    def reload_workers(self):
        """Re-read the file and apply what changed (see the module's docstring)."""
        path = self.spec.path
        try:
            new = daemonfile.load(path)
            # What only install() checks (a greenlet worker given rlimits, an
            # identity this daemon cannot take): on a daemon of its own, never run.
            FileDaemon(new)
        except GDaemonError as exc:
            self.logger.error("reload refused, nothing changed: %s", exc)
            return
        old = self.spec
        self._apply_daemon_table(old, new)
        removed = [name for name in reversed(old.order) if name not in new.workers]
        changed = [name for name in new.order if name in old.workers and new.workers[name] != old.workers[name]]
        added = [name for name in new.order if name not in old.workers]
        if not (removed or changed or added):
            self.logger.info("reload: %s: no worker changed", path)
        for name in removed:
            self.logger.info("reload: removing worker %r", name)
            self.workers.uninstall(name)
        self.spec = new
        for name in new.order:
            if not self.workers.running:
                return
            spec = new.workers[name]
            try:
                if name in added:
                    self.logger.info("reload: adding worker %s", spec.describe())
                    self._install(spec)
                elif name in changed:
                    self._replace(old.workers[name], spec)
                else:
                    continue
            except GDaemonError as exc:
                # Not applied (a port in use...): what runs is still the old table.
                self.logger.error("reload: worker %r: %s", name, exc)
                self._keep(old, new, name)
                continue
            # One at a time: the next waits until this one is LOOPING (it may start after it).
            wait = self.config["shutdowntimeout"] + self.workers.restart_timeout
            if name in self.workers.pools() and not self.workers.wait_looping(name, wait):
                self.logger.warning("reload: worker %r is not LOOPING %gs after it was (re)started; "
                                    "going on", name, wait)
        if removed or changed or added:
            self.logger.info("reload: done: %d worker%s removed, %d changed, %d added", len(removed),
                             "" if len(removed) == 1 else "s", len(changed), len(added))

    def _keep(self, old, new, name):
        """Record in ``new`` that worker ``name`` runs as in ``old`` (or not at all)."""
        if name in self.workers.pools() and name in old.workers:
            new.workers[name] = old.workers[name]
        elif name not in self.workers.pools():
            new.workers.pop(name, None)
            new.order.remove(name)

    def _replace(self, old, new):
        if old.same_but_instances(new):
            self.logger.info("reload: scaling worker %r from %d to %d instances", new.name,
                             old.instances, new.instances)
            self.workers.scale(new.name, new.instances)
            return
        self.logger.info("reload: replacing worker %s, one instance at a time", new.describe())
        self.workers.replace(new.make(), **new.options)

    def _apply_daemon_table(self, old, new):
        """Take the ``[daemon]`` keys that can change at run time; log the others."""
        before, after = old.resolved_config(), new.resolved_config()
        later = []
        for key in sorted(set(before) | set(after)):
            if before.get(key) == after.get(key):
                continue
            if key in daemonfile.RUNTIME_KEYS:
                self.logger.info("reload: daemon.%s = %r (was %r)", key, after[key], before[key])
                self.config[key] = after[key]
            else:
                later.append(key)
        if later:
            self.logger.warning("reload: %s changed in the file; that takes a restart or --upgrade",
                                ", ".join("daemon." + key for key in later))


# -- the command -------------------------------------------------------------------------

def check(path, out=None):
    """``gdaemon --check FILE``: print the workers in start order (0) or the problems (1)."""
    out = out or sys.stdout
    try:
        spec = daemonfile.load(path)
    except daemonfile.DaemonFileError as exc:
        for problem in exc.problems:
            out.write("%s\n" % problem)
        return 1
    try:
        # Installing checks what only install() knows (may the daemon switch
        # to that user?  raise that limit?); nothing is started.
        FileDaemon(spec)
    except GDaemonError as exc:
        out.write("%s\n" % exc)
        return 1
    for name in spec.order:
        out.write("%s\n" % spec.workers[name].describe())
    return 0


def main(argv=None):
    """The ``gdaemon`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    text = usage()
    if not argv:
        print(text.rstrip("\n"))
        return 0
    try:
        options = parse_arguments(text, argv)
    except DocoptExit:
        return report_usage_error(text, argv)
    if options.get("--help"):
        print(text.rstrip("\n"))
        return 0
    if options.get("--version"):
        print(version_line("gdaemon"))
        return 0
    path = options["FILE"]
    if options.get("--check"):
        return check(path)
    # Stopping, asking and cleaning need the [daemon] table only: a file
    # being edited must not keep them from finding the running daemon.
    starts = options.get("--daemon") or options.get("--foreground")
    try:
        spec = daemonfile.load(path, workers=bool(starts))
        daemon = FileDaemon(spec)
    except GDaemonError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 1
    daemon.init(argv)  # the console of every daemon, with this command's usage


if __name__ == "__main__":
    sys.exit(main())
