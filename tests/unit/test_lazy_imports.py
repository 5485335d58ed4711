"""What a daemon imports before it needs it: a daemon without workers starts
without the worker layer (its daemon.workers is made at first use)."""

import subprocess
import sys
import textwrap


def _imported_after(code):
    """The gdaemon.workers modules imported after ``code`` ran in a new interpreter."""
    probe = textwrap.dedent(code) + textwrap.dedent("""
        import sys
        print(" ".join(sorted(m for m in sys.modules if m.startswith("gdaemon.workers"))))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_daemon_without_workers_does_not_import_the_worker_layer():
    imported = _imported_after("""
        from gdaemon import Daemon
        import gdaemon.echo
        daemon = Daemon({"description": "probe"})
        assert "worker.list" in daemon.rpc
    """)
    # gdaemon.workers.rpc registers the worker.* methods; nothing else of the layer is loaded.
    assert imported == {"gdaemon.workers", "gdaemon.workers.rpc"}


def test_daemon_workers_loads_it_at_first_use():
    imported = _imported_after("""
        from gdaemon import Daemon
        daemon = Daemon({"description": "probe"})
        assert daemon.workers_made is False
        assert daemon.workers.names() == []
        assert daemon.workers_made is True
    """)
    assert {"gdaemon.workers.manager", "gdaemon.workers.spawn", "gdaemon.workers.watchdog"} <= imported


def test_the_package_still_exports_its_names():
    imported = _imported_after("""
        from gdaemon.workers import ExecWorker, Worker, WorkerManager, WorkerStatus, exposed
        import gdaemon.workers
        assert gdaemon.workers.Worker is Worker and WorkerStatus.LOOPING == 1
        assert "WorkerManager" in dir(gdaemon.workers)
    """)
    assert "gdaemon.workers.manager" in imported
