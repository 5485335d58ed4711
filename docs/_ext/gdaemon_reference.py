"""Sphinx directives that render gdaemon's references from the code itself.

Each reads what the running code uses, so the documentation cannot drift
from it:

``.. gdaemon-config::``
    every configuration key, its default and meaning (:data:`gdaemon.config.SCHEMA`);
``.. gdaemon-methods::``
    every built-in RPC method with its params and result, from the registry of
    a daemon constructed (never started) here, as ``system.methodInfo`` has it;
``.. gdaemon-events::`` (option ``:where: daemon``, ``worker`` or ``push``)
    every event and its payload keys (:data:`gdaemon.events.EVENTS`);
``.. gdaemon-install-options::``
    every option of ``daemon.workers.install()``, from its signature and docstring;
``.. gdaemon-usage:: MODULE ATTRIBUTE`` (option ``:prog:``)
    a docopt usage string as the program prints it;
``.. gdaemon-modules::`` (option ``:exclude:``)
    autodoc of every module of the package, so a new one cannot be forgotten.
"""

import importlib
import inspect
import re

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList


def _render(directive, lines):
    """Parse reST ``lines`` in the directive's context; return the nodes."""
    container = nodes.container()
    directive.state.nested_parse(StringList(lines, source="<gdaemon-reference>"),
                                 directive.content_offset, container)
    return container.children


def _one_line(text):
    return " ".join(text.split())


def _literal(value, octal=False):
    if octal and isinstance(value, int):
        return "``%s``" % oct(value)
    return "``%r``" % (value,)


class ConfigDirective(Directive):
    """Every configuration key, from gdaemon.config.SCHEMA."""

    def run(self):
        from gdaemon.config import SCHEMA
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 20 18 62", "",
                 "   * - key", "     - default", "     - meaning"]
        for name, key in SCHEMA.items():
            types = " or ".join("None" if t is type(None) else t.__name__ for t in key.types)
            lines += ["   * - .. _config-%s:" % name, "",
                      "       ``%s``" % name,
                      "     - %s" % _literal(key.default, octal=key.check == "mode"),
                      "     - %s (%s)" % (_one_line(key.meaning), types)]
        return _render(self, lines)


def _registry():
    """The registry of a daemon constructed here, with every endpoint on, never started."""
    from gdaemon import Daemon

    class _Reference(Daemon):
        def setup(self):
            pass

    return _Reference({"websockethandler": "tcp://127.0.0.1:8080"}).rpc


class MethodsDirective(Directive):
    """Every built-in RPC method, from a daemon's registry (as system.methodInfo has it)."""

    def run(self):
        registry = _registry()
        lines = []
        for name in registry.names():
            info = registry.get(name).describe()
            params = []
            for p in info["params"]:
                text = "``%s``: %s%s" % (p["name"], p["type"], " or nil" if p["nullable"] else "")
                if not p["required"]:
                    text += ", optional (default ``%s``)" % (
                        "null" if p.get("default") is None else repr(p.get("default")))
                params.append(text)
            lines += [".. _rpc-%s:" % name, "", ".. describe:: %s" % name, "",
                      "   :params: %s" % ("; ".join(params) if params else "none"),
                      "   :result: %s" % info["returns"], ""]
            lines += ["   ::", ""] + ["      " + line for line in inspect.cleandoc(info["description"]).splitlines()]
            lines += [""]
        return _render(self, lines)


class EventsDirective(Directive):
    """Every event with its payload keys, from gdaemon.events.EVENTS."""

    option_spec = {"where": directives.unchanged}

    def run(self):
        from gdaemon.events import EVENTS
        where = self.options.get("where", "daemon")
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 22 22 56", "",
                 "   * - event", "     - payload keys", "     - meaning"]
        for event in EVENTS:
            if event.where != where:
                continue
            keys = ", ".join("``%s``" % k for k in event.keys) or "none"
            if event.optional:
                keys += " (sometimes %s)" % ", ".join("``%s``" % k for k in event.optional)
            lines += ["   * - ``%s``" % event.name, "     - %s" % keys, "     - %s" % _one_line(event.meaning)]
        return _render(self, lines)


def _param_docs(doc):
    """``{name: text}`` of the ``:param name: text`` fields of a docstring."""
    found = {}
    for match in re.finditer(r":param (\w+):(.*?)(?=\n\s*:\w|\Z)", inspect.cleandoc(doc), re.S):
        found[match.group(1)] = _one_line(match.group(2))
    return found


class InstallOptionsDirective(Directive):
    """Every option of WorkerManager.install(), from its signature and docstring."""

    def run(self):
        from gdaemon.workers.manager import WorkerManager
        install = WorkerManager.install
        docs = _param_docs(install.__doc__ or "")
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 20 15 65", "",
                 "   * - option", "     - default", "     - meaning"]
        for name, param in inspect.signature(install).parameters.items():
            if name in ("self", "worker"):
                continue
            default = "required" if param.default is param.empty else _literal(param.default)
            if name not in docs:
                # An error under -W: every option is documented where it is defined.
                self.state.document.reporter.warning(
                    "install() option %r has no ':param %s:' in its docstring" % (name, name),
                    line=self.lineno)
            lines += ["   * - ``%s``" % name, "     - %s" % default,
                      "     - %s" % docs.get(name, "(undocumented)")]
        return _render(self, lines)


class UsageDirective(Directive):
    """A docopt usage string (module attribute, or a function returning it) as printed."""

    required_arguments = 2
    option_spec = {"prog": directives.unchanged}

    def run(self):
        module = importlib.import_module(self.arguments[0])
        text = getattr(module, self.arguments[1])
        if callable(text):
            text = text()
        text = text.replace("{prog}", self.options.get("prog", "PROG"))
        block = nodes.literal_block(text, text)
        return [block]


class ModulesDirective(Directive):
    """``automodule`` of every gdaemon module not in ``:exclude:`` (so none is forgotten)."""

    option_spec = {"exclude": directives.unchanged}

    def run(self):
        import pkgutil

        import gdaemon
        excluded = set(self.options.get("exclude", "").split())
        names = sorted(info.name for info in pkgutil.walk_packages(gdaemon.__path__, "gdaemon.")
                       if info.name not in excluded and ".__main__" not in info.name)
        lines = []
        for name in names:
            lines += [name, "-" * len(name), "", ".. automodule:: %s" % name, "   :members:", ""]
        return _render_with_titles(self, lines)


def _render_with_titles(directive, lines):
    from sphinx.util.nodes import nested_parse_with_titles
    container = nodes.section()
    container.document = directive.state.document
    nested_parse_with_titles(directive.state, StringList(lines, source="<gdaemon-reference>"), container)
    return container.children


def _find(dotted):
    """The object named ``dotted`` (a module, or attributes of one), or ``None``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


_TYPE_CHECKING_NAMES = None


def _type_checking_names():
    """Names gdaemon's modules bind only for type checkers (``if TYPE_CHECKING:`` blocks).

    Annotations name them (``patterns: Patterns``), so autodoc renders them,
    but they do not exist at run time.
    """
    global _TYPE_CHECKING_NAMES
    if _TYPE_CHECKING_NAMES is None:
        import ast
        import pathlib

        import gdaemon
        names = set()
        for path in pathlib.Path(gdaemon.__file__).parent.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                test = getattr(node, "test", None)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
                    for stmt in node.body:
                        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                            names.update((alias.asname or alias.name).split(".")[0] for alias in stmt.names)
                        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                            names.update(t.id for t in targets if isinstance(t, ast.Name))
        _TYPE_CHECKING_NAMES = names
    return _TYPE_CHECKING_NAMES


def resolve_code_reference(app, env, node, contnode):
    """Resolve a Python reference the docstrings make to code that exists.

    A name re-exported elsewhere (``gdaemon.RpcError``, or ``RpcError`` in a
    module that imports it) links to where it is documented under its
    defining module.  A reference to something real but not documented (an
    internal module, class or private method) renders as code without a link.
    A reference to something that does not exist stays a warning, which
    ``-W -n`` turns into a failed build: a docstring naming code that was
    renamed or removed cannot go unnoticed.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        if cls:
            candidates.append("%s.%s.%s" % (module, cls, target))
            # Where the documented class is defined, which may import the name.
            owner = _find("%s.%s" % (module, cls.split(".")[0]))
            if getattr(owner, "__module__", None):
                candidates.append("%s.%s" % (owner.__module__, target))
            # An attribute documented on a base class (set in __init__, so
            # not found on the class itself): link to the base's entry.
            for base in getattr(owner, "__mro__", ())[:-1]:
                for prefix in ("%s.%s" % (base.__module__, base.__qualname__),
                               "gdaemon.%s" % base.__qualname__):
                    found = env.get_domain("py").objects.get("%s.%s" % (prefix, target))
                    if found is not None:
                        from sphinx.util.nodes import make_refnode
                        return make_refnode(app.builder, node["refdoc"], found.docname, found.node_id,
                                            contnode, "%s.%s" % (prefix, target))
        candidates.append("%s.%s" % (module, target))
    if "." not in target:
        # A name a function imports where it needs it (``:raises UpgradeFailed:``):
        # the gdaemon module that defines it, if exactly one does.
        import sys
        # A type alias (``Patterns = Union[...]``) has no ``__qualname__`` and
        # the ``__module__`` of typing: the module that names it defines it.
        owners = [mod for mod_name, mod in list(sys.modules.items())
                  if mod_name.startswith("gdaemon") and mod is not None and hasattr(mod, target)
                  and (getattr(getattr(mod, target), "__module__", None) == mod_name
                       or not hasattr(getattr(mod, target), "__qualname__"))]
        if len(owners) == 1:
            candidates.append("%s.%s" % (owners[0].__name__, target))
    if "." not in target and target in _type_checking_names():
        return contnode  # real for type checkers, absent at run time: no page to link to
    domain = env.get_domain("py")
    for name in candidates:
        if not name.startswith("gdaemon"):
            continue
        obj = _find(name)
        if obj is None:
            continue
        canonical = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if all(canonical):
            full = "%s.%s" % canonical
            found = domain.objects.get(full)
            if found is not None:
                from sphinx.util.nodes import make_refnode
                return make_refnode(app.builder, node["refdoc"], found.docname, found.node_id, contnode, full)
        return contnode
    return None


def setup(app):
    app.connect("missing-reference", resolve_code_reference)
    app.add_directive("gdaemon-modules", ModulesDirective)
    app.add_directive("gdaemon-config", ConfigDirective)
    app.add_directive("gdaemon-methods", MethodsDirective)
    app.add_directive("gdaemon-events", EventsDirective)
    app.add_directive("gdaemon-install-options", InstallOptionsDirective)
    app.add_directive("gdaemon-usage", UsageDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
