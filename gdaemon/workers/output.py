"""A program's stdout and stderr, line by line, into the daemon's log.

Each :class:`~gdaemon.workers.exec.ExecWorker` instance writes to two pipes
the daemon made; a :class:`StreamReader` greenlet per pipe turns every line
into a log record of logger ``gdaemon.<slug>.<worker>``: INFO for stdout,
WARNING for stderr, with the program's pid.  So the lines are in the log
file, in ``daemon.logtail`` and in ``log.record`` events like every other.

What it refuses to do:

- grow: it reads :attr:`StreamReader.read_size` bytes at a time and keeps at
  most one unfinished line, itself cut at :attr:`StreamReader.max_line`
  bytes (64 KiB; a longer line becomes several records).  A program that
  writes faster than the daemon logs finds its pipe full and waits in
  ``write()``: the daemon's memory does not grow with it;
- starve the daemon: logging a line costs microseconds, and a program can
  write lines faster than that forever, so the reader yields to the hub
  after each time slice of work (:class:`~gdaemon.rpc.endpoint.TimeSlice`,
  the same budget an RPC connection gets);
- forge the log: bytes that are not UTF-8 are escaped (``\\xff``), and the
  log formatter escapes control characters: one line, one record.
"""

import logging
import os

import gevent

from ..rpc.endpoint import TimeSlice

__all__ = ["OutputRelay", "StreamReader"]


class StreamReader:
    """Reads one pipe of a program and logs its lines (see the module docstring).

    :param relay: the :class:`OutputRelay` that owns it.
    :param fd: the pipe's read end (non-blocking); closed when done.
    :param logger: the worker's output logger.
    :param level: ``logging.INFO`` (stdout) or ``logging.WARNING`` (stderr).
    :param program: has ``pid``: the pid the records carry.
    """

    #: Bytes read at a time.
    read_size = 65536
    #: Longest line logged as one record, in bytes; longer ones are split.
    max_line = 65536

    def __init__(self, relay, fd, logger, level, program):
        self.relay = relay
        self.fd = fd
        self.logger = logger
        self.level = level
        self.program = program
        self.lines = 0
        self._partial = b""
        self.greenlet = None

    def start(self):
        self.greenlet = gevent.spawn(self._run)
        self.greenlet.name = "output of %s (fd %d)" % (self.logger.name, self.fd)
        return self

    def _run(self):
        hub = gevent.get_hub()
        watcher = hub.loop.io(self.fd, 1)
        timeslice = TimeSlice()
        try:
            while True:
                try:
                    data = os.read(self.fd, self.read_size)
                except BlockingIOError:
                    hub.wait(watcher)
                    continue
                except InterruptedError:
                    continue
                if not data:
                    break
                self._take(data, timeslice)
                timeslice.check()
        finally:
            self._flush()
            watcher.close()
            self.relay.closed(self)

    def _take(self, data, timeslice):
        if self._partial:
            data = self._partial + data
            self._partial = b""
        start = 0
        find = data.find
        emit = self._emit
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            emit(data[start:end])
            start = end + 1
            timeslice.check()
        rest = data[start:]
        while len(rest) >= self.max_line:
            emit(rest[:self.max_line])
            rest = rest[self.max_line:]
        self._partial = rest

    def _flush(self):
        rest, self._partial = self._partial, b""
        if rest:
            self._emit(rest)

    def _emit(self, line):
        while len(line) > self.max_line:
            self._log(line[:self.max_line])
            line = line[self.max_line:]
        self._log(line)

    def _log(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        logger = self.logger
        self.lines += 1
        if not logger.isEnabledFor(self.level):
            return
        record = logger.makeRecord(logger.name, self.level, "(program output)", 0,
                                   line.decode("utf-8", "backslashreplace"), None, None)
        pid = self.program.pid
        if pid is not None:
            record.process = pid
        logger.handle(record)


class OutputRelay:
    """Every :class:`StreamReader` of a daemon's programs.

    :param forking: the daemon's :class:`~gdaemon.forking.ForkRegistry`: the
        pipes are registered there, so that no other child inherits them (a
        copy of a write end would keep the reader from ever seeing EOF).
    """

    #: Seconds :meth:`close` waits for readers to log the last lines of
    #: programs that are gone, before it stops them.
    close_wait = 1.0

    def __init__(self, forking):
        self.forking = forking
        self.readers = set()

    def open(self, program, logger, what):
        """Two pipes for ``program``, their readers started.

        :returns: ``(stdout, stderr)``: the write ends the child gets; the
            caller closes them (:meth:`release`) once the child has them.
        """
        ends = []
        try:
            for level in (logging.INFO, logging.WARNING):
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                self.forking.add_fd(read_end, "output pipe of " + what)
                self.forking.add_fd(write_end, "output pipe of " + what)
                os.set_blocking(read_end, False)  # the program's end stays blocking
                ends.append((read_end, write_end, level))
        except OSError:
            for read_end, write_end, _ in ends:
                self._close(read_end)
                self._close(write_end)
            raise
        readers = []
        for read_end, _, level in ends:
            reader = StreamReader(self, read_end, logger, level, program)
            self.readers.add(reader)
            readers.append(reader.start())
        program.readers = tuple(readers)
        return tuple(write_end for _, write_end, _ in ends)

    def release(self, write_ends):
        """The child has its copies: close the daemon's (EOF then comes when the program ends)."""
        for fd in write_ends:
            self._close(fd)

    def closed(self, reader):
        """A reader is done (EOF, or stopped)."""
        self.readers.discard(reader)
        self._close(reader.fd)

    def close(self):
        """The daemon stops: let the readers log what is left, then stop them."""
        readers = [r.greenlet for r in self.readers if r.greenlet is not None]
        if readers:
            gevent.joinall(readers, timeout=self.close_wait)
            gevent.killall(readers, block=True, timeout=self.close_wait)

    def _close(self, fd):
        self.forking.discard_fd(fd)
        try:
            os.close(fd)
        except OSError:
            pass
