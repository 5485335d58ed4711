"""How ``gdaemon-ctl`` shows results to people: tables, durations, times, sizes, worker states.

Worker states are named by :class:`gdaemon.wire.status.WorkerStatus`, the enum
the daemon itself uses, never by a copied table: a daemon's ``worker.info``
names them already (``status_name``), the enum names the bare codes of
``daemon.status``.
"""

import json
import time

from ..wire.status import WorkerStatus

__all__ = ["table", "duration", "timestamp", "human", "size", "seconds", "status_name", "worker_rows",
           "signature_line", "WORKER_HEADERS"]

#: The columns of ``gdaemon-ctl workers`` (and of the worker table of ``status``).
WORKER_HEADERS = ["NAME", "KIND", "PID", "STATUS", "LOOPS", "RESTARTS", "RSS", "CPU"]


def table(headers, rows):
    """Left-aligned columns two spaces apart; ``None`` cells print as ``-``."""
    cells = [headers] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def duration(seconds):
    """``75`` -> ``"1m 15s"``; what is not a number as it is."""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return "%dd %02dh %02dm" % (days, hours, minutes)
    if hours:
        return "%dh %02dm %02ds" % (hours, minutes, secs)
    return "%dm %02ds" % (minutes, secs)


def timestamp(value, precise=False):
    """An epoch time as local ``YYYY-mm-dd HH:MM:SS`` (``.mmm`` when ``precise``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        return text + (".%03d" % (int(value * 1000) % 1000) if precise else "")
    return "-" if value is None else str(value)


def human(value):
    """A result for people: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return json.dumps(value)


def size(value):
    """``123456789`` -> ``"117.7M"``; ``None`` -> ``None`` (printed ``-``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    for unit in ("B", "K", "M", "G"):
        if abs(value) < 1024 or unit == "G":
            return ("%d%s" if unit == "B" else "%.1f%s") % (value, unit)
        value /= 1024.0


def seconds(value):
    """``1.5`` -> ``"1.50s"``; ``None`` for what is not a number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return "%.2fs" % value


def status_name(code):
    """A status code's name (``1`` -> ``"LOOPING"``); an unknown code as it is."""
    try:
        return WorkerStatus(code).name
    except (ValueError, TypeError):
        return code


def worker_rows(infos):
    """Rows of :data:`WORKER_HEADERS` from ``worker.info`` results."""
    rows = []
    for info in infos:
        status = info.get("status_name") or status_name(info.get("status"))
        rows.append([info.get("name"), info.get("kind"), info.get("pid"), status,
                     info.get("loops"), info.get("restarts"), size(info.get("rss")),
                     seconds(info.get("cpu"))])
    return rows


def signature_line(info):
    """``examples.echo(message: string) -> string`` from ``system.methodInfo``."""
    params = []
    for param in info.get("params") or []:
        text = "%s: %s" % (param.get("name"), param.get("type"))
        if param.get("nullable") and param.get("type") not in ("nil", "any"):
            text += " | nil"
        if "default" in param:
            text += " = %s" % json.dumps(param["default"], ensure_ascii=False)
        params.append(text)
    return "%s(%s) -> %s" % (info.get("name"), ", ".join(params), info.get("returns"))
