"""JSON encoding for the wire: orjson (a runtime dependency), with the stdlib where orjson cannot.

Both directions take and give UTF-8 bytes, and both sides of the wire use
this module: the daemon (:mod:`gdaemon.rpc`) and the client
(:mod:`gdaemon.client`).  They differ in one thing only, what to do with a
value JSON cannot represent:

- :func:`dumps`, for what the daemon writes, turns it into a string (or a
  list) rather than failing a whole response: a handler returning a ``set``
  or a ``datetime`` still gets an answer;
- :func:`dumps_strict`, for what a client writes, raises :class:`TypeError`:
  a ``set`` among a request's params is the caller's mistake, and guessing
  would send something the caller did not mean.

Integers round-trip exactly up to :data:`MAX_INT_DIGITS` (4,300) digits
(docs/reference/rpc.rst, Framing), Python's own limit against quadratic int/str conversion
(``sys.get_int_max_str_digits``); :func:`loads` refuses a longer integer
literal with :class:`IntegerTooLong` (a ``ValueError`` naming the limit: the
daemon answers it ``-32700``), whatever the interpreter's setting.  orjson
reads an integer beyond 64 bits as a float and refuses to write one, so:

- :func:`loads` hands a text to the standard library's parser when it holds
  a run of 19 or more digits (the shortest integer that can overflow:
  ``-9223372036854775809``).  The check is ``bytes.translate`` and a
  substring search, about 1 ms per MB; a long digit run inside a string or
  a fraction merely takes the slower exact path.  That path is made as
  strict as orjson: no ``NaN``/``Infinity``, no number overflowing to
  infinity, UTF-8 only.
- :func:`dumps` and :func:`dumps_strict` fall back to the standard library
  when orjson raises.

orjson is a hard dependency (setup.cfg); the import guard only keeps this
module usable where the wheel cannot be installed.
"""

import json
import math

__all__ = ["dumps", "dumps_strict", "loads", "BACKEND", "MAX_INT_DIGITS", "IntegerTooLong"]

try:
    import orjson
except ImportError:  # pragma: no cover - no wheel for this platform
    orjson = None  # type: ignore[assignment]  # the standard json module serves instead

#: Most digits of an integer literal :func:`loads` accepts (docs/reference/rpc.rst, Framing).
MAX_INT_DIGITS = 4300
#: Shortest digit run that may be an integer orjson cannot hold.
_BIG_DIGITS = 19
# Every ASCII digit becomes "0", everything else a space.
_DIGITS_ONLY = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_DIGIT_RUN = b"0" * _BIG_DIGITS
_SCAN_STEP = 65536


def _fallback(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range: %s" % text[:40])
    return value


class IntegerTooLong(ValueError):
    """An integer literal of more than :data:`MAX_INT_DIGITS` digits."""


def _bounded_int(text):
    # Checked here rather than left to int(), whose limit a program may have
    # raised or lifted (sys.set_int_max_str_digits(0)): converting a long
    # literal costs time quadratic in its length.
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise IntegerTooLong("integer literal of more than %d digits (Python's limit against quadratic int/str conversion)"
                             % MAX_INT_DIGITS)
    return int(text)


_decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                            parse_int=_bounded_int)
_LENIENT = (json.JSONEncoder(default=_fallback, separators=(",", ":"), ensure_ascii=False).encode,
            json.JSONEncoder(default=_fallback, separators=(",", ":")).encode)
_STRICT = (json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode,
           json.JSONEncoder(separators=(",", ":")).encode)


def _std_loads(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")  # UnicodeDecodeError is a ValueError
    try:
        return _decoder.decode(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _std_dumps(value, encoders=_LENIENT):
    encode, encode_ascii = encoders
    try:
        return encode(value).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a "\\ud800" escape the stdlib parser
        # accepted): escaped, it still round-trips.
        return encode_ascii(value).encode("ascii")


def may_hold_big_int(data):
    """True when ``data`` (bytes-like or str) has a digit run long enough to overflow 64 bits.

    Checked 64 KB at a time (overlapping by a run's length), so a 1 MB text
    costs no 1 MB copy.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    size = len(data)
    if size < _BIG_DIGITS:
        return False
    if size <= _SCAN_STEP:  # a request, mostly: one pass
        return _DIGIT_RUN in data.translate(_DIGITS_ONLY)
    step = _SCAN_STEP
    for start in range(0, size, step):
        if _DIGIT_RUN in data[start:start + step + _BIG_DIGITS - 1].translate(_DIGITS_ONLY):
            return True
    return False


if orjson is not None:
    BACKEND = "orjson"
    _OPTS = orjson.OPT_NON_STR_KEYS

    def dumps(value):
        """Encode ``value`` as compact UTF-8 JSON bytes."""
        try:
            return orjson.dumps(value, default=_fallback, option=_OPTS)
        except TypeError:
            # Integers beyond 64 bits, nesting deeper than orjson's 255
            # levels, lone surrogates: the stdlib writes them all.
            return _std_dumps(value)

    def dumps_strict(value):
        """Encode ``value`` as compact UTF-8 JSON bytes; :class:`TypeError` for what JSON cannot represent."""
        try:
            return orjson.dumps(value, option=_OPTS)
        except TypeError:
            # Integers beyond 64 bits, deep nesting, lone surrogates (as in
            # dumps), and values JSON cannot represent: the stdlib raises
            # TypeError for those.
            return _std_dumps(value, _STRICT)

    def loads(data):
        """Decode JSON bytes or str; raises ``ValueError`` on bad input."""
        if may_hold_big_int(data):
            return _std_loads(data)
        return orjson.loads(data)
else:  # pragma: no cover - no wheel for this platform
    BACKEND = "json"
    dumps = _std_dumps

    def dumps_strict(value):
        return _std_dumps(value, _STRICT)

    loads = _std_loads
