"""Compile-time evaluation of `const` expressions (rule 22): literals and other consts."""
from __future__ import annotations

import math
from typing import Any

from dsl import nodes as n

_FUNCS = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": abs}


class NotConstant(Exception):
    """The expression reads something that is not known at compile time."""


def evaluate(e: Any, variables: dict[str, Any], builder: Any = None) -> int | float:
    """Fold `e` to a Python number; report a diagnostic through `builder` on failure."""
    try:
        return fold(e, {k: v.value for k, v in variables.items() if v.role == "const"})
    except (NotConstant, ZeroDivisionError, ValueError, OverflowError) as exc:
        if builder is not None:
            builder.error(f"cannot evaluate this constant: {exc or 'not a constant'}",
                          getattr(e, "span", None))
        return 0


def fold(e: Any, env: dict[str, Any]) -> int | float:
    """The value of an expression built from numbers and the names in `env`."""
    if isinstance(e, n.Number):
        return e.value
    if isinstance(e, n.Name):
        if e.id in env and env[e.id] is not None:
            return env[e.id]  # type: ignore[no-any-return]
        raise NotConstant(f"'{e.id}' is not a constant")
    if isinstance(e, n.Unary):
        return -fold(e.operand, env)
    if isinstance(e, n.Binary):
        a, b = fold(e.left, env), fold(e.right, env)
        if e.op == "+":
            return a + b
        if e.op == "-":
            return a - b
        if e.op == "*":
            return a * b
        if e.op == "/":
            return a / b
        if e.op == "^":
            return a ** b  # type: ignore[no-any-return]
        raise NotConstant(f"'{e.op}' is not allowed in a constant")
    if isinstance(e, n.Call) and e.func.id in _FUNCS and len(e.args) == 1 and not e.kwargs:
        return _FUNCS[e.func.id](fold(e.args[0], env))  # type: ignore[no-any-return]
    raise NotConstant("only numbers, other consts and + - * / ^ exp log sqrt abs are allowed")
