"""The version of gdaemon, in a module of its own.

Modules inside the package read it from here rather than from the package
root (``from .. import __version__`` is an upward import: it runs the whole
``gdaemon/__init__.py``), and ``setup.cfg`` reads it from here without
importing anything (``attr: gdaemon.version.__version__`` is found by
parsing this file, so building needs none of the runtime dependencies).
"""

__version__ = "0.1.0"
