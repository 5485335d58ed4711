"""The RPC method registry: declared methods, parameter checking, introspection.

A method is a handler plus what the wire needs to know about it: its name, a
description (``system.methodHelp``), its declared parameters with their types
(checked on every call, ``-32602`` naming the parameter) and its return type
(``system.methodSignature``).

Declared types are ``str``, ``int``, ``float`` (accepts an int), ``bool``,
``list``, ``dict``, ``typing.Optional[...]`` of those, and ``typing.Any``.
Booleans are never integers.
"""

import inspect
import types
import typing

from ..errors import InvalidParams

__all__ = ["RpcMethod", "MethodRegistry", "REQUIRED", "xmlrpc_type_name"]

#: Marks a parameter without a default.
REQUIRED = inspect.Parameter.empty

_XMLRPC_NAMES = {str: "string", int: "int", float: "double", bool: "boolean",
                 list: "array", tuple: "array", dict: "struct", type(None): "nil"}

#: Keyword arguments the dispatcher can inject when a handler asks for them
#: by name (and does not declare them as RPC params).
INJECTABLE = ("daemon", "session")


#: What ``typing.get_origin`` gives for a union: ``Optional[int]`` and, from
#: Python 3.10, ``int | None`` (a ``types.UnionType``).
_UNION_ORIGINS = tuple(o for o in (typing.Union, getattr(types, "UnionType", None)) if o is not None)


def _optional_inner(tp):
    """``Optional[int]`` or ``int | None`` -> ``(int, True)``; ``int`` -> ``(int, False)``."""
    if typing.get_origin(tp) in _UNION_ORIGINS:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(tp))
        inner = args[0] if len(args) == 1 else typing.Any
        return inner, nullable
    if tp is None or tp is type(None):
        return type(None), True
    return tp, False


def xmlrpc_type_name(tp):
    """XML-RPC style name of a declared type (``system.methodSignature``)."""
    if tp is None:
        return "nil"
    inner, _ = _optional_inner(tp)
    origin = typing.get_origin(inner) or inner
    return _XMLRPC_NAMES.get(origin, "any" if inner is typing.Any else "string")


def _type_label(tp):
    inner, nullable = _optional_inner(tp)
    name = getattr(typing.get_origin(inner) or inner, "__name__", str(inner))
    return "%s or null" % name if nullable and inner is not type(None) else name


def _always(value):
    return True


def compile_check(tp):
    """The check of a value against declared type ``tp``, as a ``value -> bool``
    made once (the type's introspection is done here, not on every call).

    ``Any`` (or no annotation) takes anything; ``None`` (JSON null) only a
    nullable type (``Optional[X]``, ``X | None``, ``None``); a boolean only
    ``bool``; ``float`` takes integers too; ``list`` and ``tuple`` (and
    their generic forms) take an array; another class its instances; a
    union of several types anything but null; a type that is no class (a
    callable) anything but null and booleans.
    """
    if tp is typing.Any or tp is inspect.Parameter.empty:
        return _always
    inner, nullable = _optional_inner(tp)
    inner = typing.get_origin(inner) or inner
    if inner is typing.Any:
        return (lambda value: value is not None or nullable)
    if inner is bool:
        test = (lambda value: isinstance(value, bool))
    elif inner is float:
        test = (lambda value: isinstance(value, (int, float)) and not isinstance(value, bool))
    elif inner in (list, tuple):
        test = (lambda value: isinstance(value, list))
    elif isinstance(inner, type):
        test = (lambda value: isinstance(value, inner) and not isinstance(value, bool))
    else:
        test = (lambda value: not isinstance(value, bool))
    if nullable:
        return (lambda value: value is None or test(value))
    if isinstance(inner, type) and not isinstance(None, inner):
        return test  # refuses null already: one call less per param
    return (lambda value: value is not None and test(value))


def _json_type_name(value):
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


#: A declared parameter: a :class:`Param`, or ``(name, type)`` / ``(name, type, default)``.
_ParamDecl = typing.Union["Param", typing.Tuple[typing.Any, ...]]
#: An RPC handler, returned as it was given by :meth:`MethodRegistry.method`.
_Handler = typing.TypeVar("_Handler", bound=typing.Callable[..., typing.Any])


class Param:
    """One declared parameter: ``name``, ``type``, ``default`` (or REQUIRED)."""

    __slots__ = ("name", "type", "default", "_checked_type", "_matches")

    def __init__(self, name: str, type: typing.Any = typing.Any, default: typing.Any = REQUIRED) -> None:
        self.name, self.type, self.default = name, type, default
        self._checked_type: typing.Any = type
        self._matches = compile_check(type)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: typing.Any) -> typing.Any:
        if self._checked_type is not self.type:  # reassigned since
            self._checked_type, self._matches = self.type, compile_check(self.type)
        if not self._matches(value):
            raise InvalidParams("invalid param %r: expected %s, got %s"
                                % (self.name, _type_label(self.type), _json_type_name(value)))
        return value


class RpcMethod:
    """A method the daemon serves.

    :param name: the wire name, e.g. ``"examples.echo"``.
    :param handler: the callable; called with the declared params as keyword
        arguments, plus ``daemon=`` (and ``session=``) when its signature asks.
    :param description: shown by ``system.methodHelp``.
    :param params: ``[(name, type), (name, type, default), ...]``; ``None``
        reads them off the handler's signature (annotations as types).
    :param returns: the declared return type.
    """

    def __init__(self, name: str, handler: typing.Callable[..., typing.Any], description: str = "",
                 params: typing.Optional[typing.Sequence[_ParamDecl]] = None,
                 returns: typing.Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("method name must be a non-empty string")
        self.name = name
        self.handler = handler
        self.description = description or inspect.getdoc(handler) or ""
        self.returns = returns
        try:
            signature = inspect.signature(handler)
        except (TypeError, ValueError):
            signature = None
        handler_params = signature.parameters if signature else {}
        if params is None:
            params = [(p.name, p.annotation if p.annotation is not p.empty else typing.Any)
                      for p in handler_params.values()
                      if p.name not in INJECTABLE
                      and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        self.params: typing.List[Param] = []
        for spec in params:
            if isinstance(spec, Param):
                self.params.append(spec)
                continue
            pname, ptype = spec[0], spec[1] if len(spec) > 1 else typing.Any
            if len(spec) > 2:
                default = spec[2]
            else:
                hp = handler_params.get(pname)
                default = hp.default if hp is not None else REQUIRED
            self.params.append(Param(pname, ptype, default))
        self._by_name = {p.name: p for p in self.params}
        declared = set(self._by_name)
        accepts_var_kw = any(p.kind == p.VAR_KEYWORD for p in handler_params.values())
        self.inject = tuple(n for n in INJECTABLE
                            if n not in declared and (n in handler_params or accepts_var_kw and n == "daemon"))

    def bind(self, params: typing.Any) -> typing.Dict[str, typing.Any]:
        """Check wire ``params`` (list, dict or None); return handler kwargs.

        :raises InvalidParams: naming the offending parameter.
        """
        kwargs = {}
        if params is None:
            params = []
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise InvalidParams("too many params: %s takes at most %d, got %d"
                                    % (self.name, len(self.params), len(params)))
            for param, value in zip(self.params, params):
                kwargs[param.name] = param.check(value)
        else:
            for key, value in params.items():
                named = self._by_name.get(key)
                if named is None:
                    raise InvalidParams("unknown param %r" % (key,))
                kwargs[key] = named.check(value)
        if len(kwargs) < len(self.params):
            for param in self.params:
                if param.name not in kwargs:
                    if param.required:
                        raise InvalidParams("missing param %r" % (param.name,))
                    kwargs[param.name] = param.default
        return kwargs

    def signature(self) -> typing.List[str]:
        """``[return_type, param_type, ...]`` with XML-RPC type names."""
        return [xmlrpc_type_name(self.returns)] + [xmlrpc_type_name(p.type) for p in self.params]

    def describe(self) -> typing.Dict[str, typing.Any]:
        """What ``system.methodInfo`` returns: the signature with parameter names.

        ``{"name", "description", "returns", "params": [{"name", "type",
        "nullable", "required", "default"}]}``: types are the XML-RPC names of
        ``system.methodSignature``; ``default`` is only present for an
        optional parameter; the description is dedented.
        """
        params = []
        for param in self.params:
            item = {"name": param.name, "type": xmlrpc_type_name(param.type),
                    "nullable": _optional_inner(param.type)[1] if param.type is not typing.Any else True,
                    "required": param.required}
            if not param.required:
                item["default"] = param.default
            params.append(item)
        return {"name": self.name, "description": inspect.cleandoc(self.description or ""),
                "returns": xmlrpc_type_name(self.returns), "params": params}

    def __repr__(self) -> str:
        return "<RpcMethod %s(%s)>" % (self.name, ", ".join(p.name for p in self.params))


class MethodRegistry:
    """The methods one daemon serves, by name."""

    def __init__(self) -> None:
        self._methods: typing.Dict[str, RpcMethod] = {}

    def add(self, method: RpcMethod) -> RpcMethod:
        """Register a prebuilt :class:`RpcMethod` (replacing one of the same name)."""
        if not isinstance(method, RpcMethod):
            raise TypeError("expected an RpcMethod, got %r" % (method,))
        self._methods[method.name] = method
        return method

    def method(self, name: str, description: str = "",
               params: typing.Optional[typing.Sequence[_ParamDecl]] = None,
               returns: typing.Any = None) -> typing.Callable[[_Handler], _Handler]:
        """Decorator: register the decorated function as method ``name``.

        Returns the function unchanged, so it stays callable from Python.
        """
        def decorate(handler: _Handler) -> _Handler:
            self.add(RpcMethod(name, handler, description, params, returns))
            return handler
        return decorate

    def remove(self, name: str) -> None:
        self._methods.pop(name, None)

    def get(self, name: str) -> typing.Optional[RpcMethod]:
        """The :class:`RpcMethod` called ``name``, or ``None``."""
        return self._methods.get(name)

    def names(self) -> typing.List[str]:
        """Sorted list of method names."""
        return sorted(self._methods)

    def __contains__(self, name):
        return name in self._methods

    def __iter__(self):
        return iter(self._methods.values())

    def __len__(self):
        return len(self._methods)
