"""JSON encoding for the wire: orjson when installed (``gdaemon[fast]``), else stdlib.

Both return and accept bytes.  Values JSON cannot represent are turned into
strings rather than failing a whole response (a handler returning a ``set`` or
a ``datetime`` still gets an answer).
"""

import json

__all__ = ["dumps", "loads", "BACKEND"]

try:  # optional speed-up, see the README's "Dependencies" section
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def _fallback(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


if orjson is not None:
    BACKEND = "orjson"
    _OPTS = orjson.OPT_NON_STR_KEYS

    def dumps(value):
        """Encode ``value`` as compact UTF-8 JSON bytes."""
        try:
            return orjson.dumps(value, default=_fallback, option=_OPTS)
        except TypeError:
            # orjson rejects integers beyond 64 bits and a few other corner cases.
            return json.dumps(value, default=_fallback, separators=(",", ":"),
                              ensure_ascii=False).encode()

    def loads(data):
        """Decode JSON bytes or str; raises ``ValueError`` on bad input."""
        return orjson.loads(data)
else:  # pragma: no cover - depends on the environment
    BACKEND = "json"
    _encode = json.JSONEncoder(default=_fallback, separators=(",", ":"), ensure_ascii=False).encode

    def dumps(value):
        """Encode ``value`` as compact UTF-8 JSON bytes."""
        return _encode(value).encode()

    def loads(data):
        """Decode JSON bytes or str; raises ``ValueError`` on bad input."""
        return json.loads(data)
