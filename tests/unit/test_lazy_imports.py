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


def _run(code):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_daemon_side_is_imported_without_the_collector():
    # A new interpreter: the collector's statistics count only this import.
    out = _run("""
        import gc
        import gdaemon  # the package itself is light: errors and version
        before = sum(s["collections"] for s in gc.get_stats())
        from gdaemon import Daemon
        import gdaemon.echo
        after = sum(s["collections"] for s in gc.get_stats())
        print(after - before, gc.isenabled(), gc.get_count()[0] < 700, gc.get_freeze_count())
    """)
    collections, enabled, young_small, frozen = out.split()
    # Without the pause the same imports run the collector about 30 times.
    assert collections == "0"
    # Resumed afterwards, with what the import made counted as old (not
    # frozen, not left young for one long collection).
    assert (enabled, young_small, frozen) == ("True", "True", "0")


def test_collector_paused_nests_and_respects_a_program_that_froze_objects():
    out = _run("""
        import gc
        from gdaemon.lazy import collector_paused
        with collector_paused():
            with collector_paused():
                pass
            inner_left_it_paused = not gc.isenabled()
        print(inner_left_it_paused, gc.isenabled())
        gc.disable()
        with collector_paused():
            pass
        print(gc.isenabled())  # a program that paused it itself keeps it paused
        gc.enable()
        junk = [[] for _ in range(1000)]
        gc.freeze()
        frozen = gc.get_freeze_count()
        with collector_paused():
            more = [[] for _ in range(1000)]
        print(gc.get_freeze_count() == frozen, gc.isenabled())
    """)
    assert out.split() == ["True", "True", "False", "True", "True"]
