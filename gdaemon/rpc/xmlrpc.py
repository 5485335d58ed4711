"""The XML-RPC bridge of the HTTP endpoint: ``POST /RPC2`` (docs/reference/http.rst).

Every method of the daemon's registry is callable over XML-RPC, so the
standard library's client works as is::

    import xmlrpc.client
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1:8080/RPC2", allow_none=True)
    proxy.examples.echo("hi")          # -> 'hi'
    proxy.system.listMethods()

Mapping between the two protocols:

- XML-RPC params are positional: they are passed to the method as a JSON
  array would be (a single ``<struct>`` param is one positional argument, not
  named arguments).
- Results map naturally: ``dict`` -> ``<struct>`` (keys made strings),
  ``list``/``tuple``/``set`` -> ``<array>``, ``None`` -> ``<nil/>`` (the
  ``allow_none`` extension, which :mod:`xmlrpc.client` understands when the
  proxy is built with ``allow_none=True``), ``bytes`` -> ``<base64>``.
  Integers outside XML-RPC's 32-bit ``<int>`` become ``<double>`` (exact up to
  2**53) or, beyond that, strings.  Characters XML 1.0 cannot carry (NUL and
  most C0 controls) are replaced by U+FFFD, since the client's parser would
  reject the whole response otherwise.
- Errors: an :class:`~gdaemon.errors.RpcError` becomes
  ``<fault>`` with ``faultCode`` = its JSON-RPC code and ``faultString`` = its
  message (``-32601`` for an unknown method, ``-32602`` for bad params...);
  an undecodable body is fault ``-32700``, a body that is not a
  ``<methodCall>`` fault ``-32600``, a response document that would pass
  ``socketmaxreply`` bytes fault ``-32003`` (docs/reference/rpc.rst, What one client can cost).

This module does no I/O: :func:`handle_body` turns request bytes into
response bytes, the HTTP endpoint (:mod:`gdaemon.rpc.http`) does the rest
(size limit, authentication, status codes).
"""

import datetime
import logging
import re
import xmlrpc.client

from ..errors import InvalidRequest, ParseError, RpcError

__all__ = ["handle_body", "fault_body", "CONTENT_TYPE"]

log = logging.getLogger("gdaemon.rpc.xmlrpc")

#: Content type of every XML-RPC response.
CONTENT_TYPE = "text/xml; charset=utf-8"

# XML 1.0 allows TAB, LF, CR and everything from U+0020 except surrogates and
# U+FFFE/U+FFFF.
_NOT_XML_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def handle_body(engine, body, session):
    """Answer one XML-RPC request.

    :param engine: the daemon's :class:`~gdaemon.rpc.protocol.Engine`.
    :param body: the request body (bytes).
    :param session: the :class:`~gdaemon.rpc.protocol.Session` of this request.
    :returns: the ``<methodResponse>`` document (bytes, UTF-8).
    """
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=True)
    except Exception as exc:  # expat, ValueError, TypeError...: all mean "not valid XML-RPC"
        engine.client_errors.log("xmlrpc.decode", logging.DEBUG, "undecodable XML-RPC request from %s: %s",
                                 session.peer, _short(exc))
        return fault_body(ParseError("Parse error: %s" % (exc,)))
    if not isinstance(method, str) or not method:
        return fault_body(InvalidRequest("expected a <methodCall> with a <methodName>"))
    try:
        result = engine.call(method, list(params), session)
    except RpcError as exc:
        return fault_body(exc)
    try:
        document = xmlrpc.client.dumps((to_xmlrpc(result),), methodresponse=True,
                                       allow_none=True, encoding="utf-8").encode("utf-8")
    except RecursionError:
        # Nesting deeper than the marshaller goes: a client echoing a bomb,
        # typically.  A traceback here would be a thousand frames long, per
        # request (issue 8): one rate-limited line instead.
        engine.client_errors.log("xmlrpc.encode", logging.WARNING,
                                 "cannot encode the XML-RPC result of %s for %s: nested too deeply",
                                 method, session.peer)
        return fault_body(RpcError(-32603, "result nested too deeply for XML-RPC"))
    except Exception:  # a result we failed to make representable: a bug worth a traceback
        log.exception("cannot encode the XML-RPC result of %s", method)
        return fault_body(RpcError(-32603, "result cannot be represented in XML-RPC"))
    if len(document) > engine.max_reply:
        # docs/reference/rpc.rst, What one client can cost: a reply is at most socketmaxreply bytes, here too.
        engine.client_errors.log("reply-too-large", logging.INFO,
                                 "XML-RPC reply to %s would exceed %d bytes (socketmaxreply): "
                                 "answered -32003 instead", session.peer, engine.max_reply)
        error = engine.too_large_response(None, ran=True)["error"]
        return fault_body(RpcError(error["code"], error["message"]))
    return document


def _short(exc):
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def fault_body(exc):
    """The ``<fault>`` response document for an :class:`RpcError` (bytes)."""
    fault = xmlrpc.client.Fault(exc.code, _text(exc.message))
    return xmlrpc.client.dumps(fault, methodresponse=True, encoding="utf-8").encode("utf-8")


def to_xmlrpc(value):
    """``value`` made representable in XML-RPC (see the module docstring)."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        if xmlrpc.client.MININT <= value <= xmlrpc.client.MAXINT:
            return value
        return float(value) if abs(value) <= 2 ** 53 else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): to_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_xmlrpc(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return xmlrpc.client.Binary(bytes(value))
    if isinstance(value, (datetime.datetime, xmlrpc.client.DateTime, xmlrpc.client.Binary)):
        return value
    return _text(str(value))


def _text(text):
    return _NOT_XML_CHARS.sub("\ufffd", text)
