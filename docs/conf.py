"""Sphinx configuration of gdaemon's documentation.

Build: ``sphinx-build -W -n -b html docs docs/_build/html`` (what .ci/run does).
The references (configuration keys, RPC methods, events, install() options,
the consoles' usage) are generated from the code by ``_ext/gdaemon_reference.py``.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

from gdaemon.version import __version__  # noqa: E402

project = "gdaemon"
author = "gdaemon contributors"
copyright = "gdaemon contributors"  # noqa: A001 (Sphinx's name)
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "gdaemon_reference",
]

# alabaster: Sphinx's own default theme, installed with Sphinx itself (no
# extra dependency to keep working), readable without JavaScript.
html_theme = "alabaster"
html_theme_options = {
    "description": "Multi-process Unix daemons on gevent",
    "fixed_sidebar": True,
}
html_static_path = []

exclude_patterns = ["_build", "tutorial/*.py"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

# Names the docstrings mention from the standard library and the dependencies
# (no intersphinx: the build must not need the network).
nitpick_ignore_regex = [
    (r"py:.*", r"(gevent|blinker|greenlet|socket|ssl|logging|typing|enum|collections|mmap|signal|"
               r"subprocess|threading|os|sys|io|selectors|resource|ipaddress|docopt|prometheus_client|StreamServer)(\..*)?"),
    (r"py:.*", r"(int|str|float|bool|bytes|list|dict|tuple|set|object|type|None|callable|Exception|"
               r"BaseException|OSError|KeyError|ValueError|TimeoutError|ImportError|RuntimeError|"
               r"ConnectionError|NamedTuple|Any|Optional|Tuple|Iterator|Callable)"),
]
