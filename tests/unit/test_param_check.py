"""Checking RPC params against their declared types (gdaemon.rpc.methods.compile_check).

The check is compiled once per declared param; these cases pin down what it
decides, rule by rule, and that a Param follows a type reassigned later.
"""

import inspect
import typing

import pytest

from gdaemon.errors import InvalidParams
from gdaemon.rpc.methods import Param, RpcMethod, compile_check

ANYTHING = [None, True, 0, 1.5, "x", [1], {"a": 1}]


@pytest.mark.parametrize("tp", [typing.Any, inspect.Parameter.empty])
def test_any_or_no_annotation_takes_anything(tp):
    check = compile_check(tp)
    assert all(check(value) for value in ANYTHING)


@pytest.mark.parametrize("tp, takes, refuses", [
    (int, [0, -5, 2 ** 70], [None, True, False, 1.5, "1", [1], {}]),
    (float, [0, 1.5, float("nan")], [None, True, "1.5", []]),
    (str, ["", "x"], [None, True, 0, ["x"], b"x"]),
    (bool, [True, False], [None, 0, 1, "true"]),
    (list, [[], [1, "a"]], [None, (), {}, "ab", True]),
    (tuple, [[], [1]], [(1,), None]),  # JSON has arrays only
    (typing.List[int], [[], ["not checked inside"]], [None, {}]),
    (dict, [{}, {"a": 1}], [None, [], True]),
    (typing.Dict[str, int], [{}], [[], None]),
    (object, [0, "x", [], {}], [None, True]),
])
def test_a_class_takes_its_instances_but_not_null_nor_a_boolean_for_another_type(tp, takes, refuses):
    check = compile_check(tp)
    assert [check(value) for value in takes] == [True] * len(takes)
    assert [check(value) for value in refuses] == [False] * len(refuses)


@pytest.mark.parametrize("tp", [typing.Optional[int], int | None, typing.Union[int, None]])
def test_a_nullable_type_takes_null_too(tp):
    check = compile_check(tp)
    assert check(None) and check(3)
    assert not check("3") and not check(True)


@pytest.mark.parametrize("tp", [None, type(None)])
def test_none_declared_takes_only_null(tp):
    check = compile_check(tp)
    assert check(None)
    assert not check(0) and not check("") and not check(False)


def test_optional_any_takes_anything_and_a_union_of_several_classes_anything_but_null():
    assert all(compile_check(typing.Optional[typing.Any])(value) for value in ANYTHING)
    union = compile_check(typing.Union[int, str])
    assert union(1) and union("x") and union([1]) and union(True)  # several classes: not narrowed
    assert not union(None)
    assert compile_check(typing.Union[int, str, None])(None)


def test_a_param_follows_its_type_when_it_is_reassigned():
    param = Param("n", int)
    assert param.check(1) == 1
    param.type = str
    assert param.check("x") == "x"
    with pytest.raises(InvalidParams, match="invalid param 'n': expected str, got integer"):
        param.check(1)


def test_a_method_binds_checked_params_by_position_and_by_name():
    method = RpcMethod("m", lambda a, b=2: None, params=[("a", int), ("b", typing.Optional[str], None)])
    assert method.bind([1]) == {"a": 1, "b": None}
    assert method.bind({"a": 1, "b": "x"}) == {"a": 1, "b": "x"}
    with pytest.raises(InvalidParams, match="invalid param 'a': expected int, got boolean"):
        method.bind([True])
    with pytest.raises(InvalidParams, match="invalid param 'b': expected str or null, got integer"):
        method.bind({"a": 1, "b": 3})
