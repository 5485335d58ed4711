"""gevent's pywsgi internals, for the HTTP endpoint's limits and strict framing.

:class:`gdaemon.rpc.http` subclasses pywsgi's ``WSGIServer``, ``WSGIHandler``
(through gevent-websocket's handler) and ``Input``, and relies on these of
their parts that gevent does not document as an interface:

- ``WSGIHandler`` methods overridden to bound a request in time, count a
  connection's progress and keep our logging: ``handle``,
  ``handle_one_request``, ``read_requestline``, ``read_request``,
  ``MessageClass`` (checks framing headers as parsed, before pywsgi drops a
  ``Content-Length`` beside ``chunked``), ``get_environ``,
  ``run_application``, ``handle_error``, ``log_request``; the private
  ``_handle_client_error`` (pywsgi logs a malformed request as an ERROR with
  a traceback; ours is a rate-limited INFO line) and
  ``_send_error_response_if_possible``; the attributes ``wsgi_input``,
  ``close_connection``, ``rfile``, ``socket``, ``requestline``.
- ``Input._Input__read_chunk_length`` (name-mangled private): the hook where
  a chunk size is parsed, so that a chunk larger than ``socketmaxmessage`` is
  refused before pywsgi allocates it (:class:`ChunkCheckingInput`);
  ``Input._chunked_read`` and ``_chunked_input_error``.
- ``_InvalidClientInput``: the exception pywsgi answers with ``400`` and a
  closed connection.

The check at import: gevent within the supported range, and the names above
present; otherwise a one-line :class:`ImportError`.
"""

from gevent import pywsgi
from gevent.pywsgi import Input, LoggingLogAdapter, WSGIHandler, WSGIServer

from . import missing
from ._gevent import VERSION

__all__ = ["ChunkCheckingInput", "Input", "InvalidClientInput", "LoggingLogAdapter", "WSGIServer"]

_NEEDED = ((pywsgi, "_InvalidClientInput"), (Input, "_Input__read_chunk_length"), (Input, "_chunked_read"),
           (WSGIHandler, "_handle_client_error"), (WSGIHandler, "_send_error_response_if_possible"),
           (WSGIHandler, "read_requestline"), (WSGIHandler, "read_request"), (WSGIHandler, "MessageClass"),
           (WSGIHandler, "handle_one_request"), (WSGIHandler, "get_environ"), (WSGIHandler, "run_application"))
_absent = ["gevent.pywsgi.%s.%s" % (getattr(owner, "__name__", "").rpartition(".")[2], name)
           for owner, name in _NEEDED if not hasattr(owner, name)]
if _absent:
    raise missing("gevent", VERSION, _absent)

#: pywsgi's "bad request from the client" exception: answered with 400, then the connection closes.
InvalidClientInput = pywsgi._InvalidClientInput  # type: ignore[attr-defined]  # private: not in gevent's stubs


class ChunkCheckingInput(Input):
    """pywsgi's request body reader, with a hook on every chunk size it parses.

    Override :meth:`checked_chunk_length`; it may raise
    :data:`InvalidClientInput`.
    """

    def _Input__read_chunk_length(self, rfile):
        # Private (name-mangled): not in gevent's stubs.
        return self.checked_chunk_length(Input._Input__read_chunk_length(self, rfile))  # type: ignore[attr-defined]

    def checked_chunk_length(self, length):
        """The chunk size ``length`` just parsed; return it, or raise to refuse the body."""
        return length
