"""Compile-time evaluation of constant expressions: `const` definitions (rule 22) and the
constant parts of every other expression (`Normal(0, 1 + 1)`).

Numbers are folded exactly as Python folds them (integers exactly, reals as IEEE doubles)
but never to a value a 64-bit real cannot hold: a result beyond about 1.8e308, a power
that would build a number of millions of digits, a division by zero or a negative base to
a fractional power is a located error, never `inf`, `nan`, a hang or a Python complex.
"""
from __future__ import annotations

import math
import sys
from typing import Any

from dsl import nodes as n

_FUNCS = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": abs,
          "square": lambda x: x * x, "log1p": math.log1p, "expm1": math.expm1}
_LARGEST = sys.float_info.max
# An integer power is computed only when its result has at most this many bits: beyond
# 1024 bits it exceeds every real anyway, and 9 ^ 9 ^ 9 would take minutes to build.
_MAX_BITS = 1100


class NotConstant(Exception):
    """The expression reads something that is not known at compile time."""


class BadConstant(Exception):
    """A constant expression with no real value; `node` is the part at fault."""

    def __init__(self, message: str, node: Any):
        super().__init__(message)
        self.node = node


def evaluate(e: Any, variables: dict[str, Any], builder: Any = None) -> int | float:
    """Fold `e` to a Python number; report a diagnostic through `builder` on failure."""
    try:
        return fold(e, {k: v.value for k, v in variables.items() if v.role == "const"})
    except NotConstant as exc:
        if builder is not None:
            builder.error(f"cannot evaluate this constant: {exc or 'not a constant'}",
                          getattr(e, "span", None))
    except BadConstant as exc:
        if builder is not None:
            builder.error(str(exc), getattr(exc.node, "span", None) or getattr(e, "span", None))
    return 0


def is_constant(e: Any, env: dict[str, Any]) -> bool:
    """Whether `e` is built only from numbers, the consts in `env` and what fold knows."""
    if isinstance(e, n.Number):
        return True
    if isinstance(e, n.Name):
        return env.get(e.id) is not None
    if isinstance(e, n.Unary):
        return is_constant(e.operand, env)
    if isinstance(e, n.Binary):
        return e.op in "+-*/^" and is_constant(e.left, env) and is_constant(e.right, env)
    if isinstance(e, n.Call):
        return e.func.id in _FUNCS and len(e.args) == 1 and not e.kwargs and \
            e.func.id not in env and is_constant(e.args[0], env)
    return False


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
        if e.op not in "+-*/^":
            raise NotConstant(f"'{e.op}' is not allowed in a constant")
        return _checked(_arith(e.op, fold(e.left, env), fold(e.right, env), e), e)
    if isinstance(e, n.Call) and e.func.id in _FUNCS and len(e.args) == 1 and not e.kwargs:
        x = fold(e.args[0], env)
        try:
            return _checked(_FUNCS[e.func.id](x), e)
        except (ValueError, OverflowError):
            raise _bad_call(e.func.id, x, e) from None
    raise NotConstant("only numbers, other consts and + - * / ^ exp log sqrt abs square "
                      "log1p expm1 are allowed")


def _arith(op: str, a: int | float, b: int | float, node: Any) -> int | float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                raise BadConstant("division by zero in a constant expression", node)
            return a / b
        return _power(a, b, node)
    except OverflowError:
        raise _too_large(node) from None


def _power(a: int | float, b: int | float, node: Any) -> int | float:
    if a == 0 and b < 0:
        raise BadConstant("0 to a negative power has no value", node)
    if isinstance(a, int) and isinstance(b, int) and b >= 0:
        if abs(a) > 1 and b * (abs(a).bit_length() - 1) > _MAX_BITS:
            raise _too_large(node)
        return a ** b
    if a < 0 and not float(b).is_integer():
        raise BadConstant(f"a negative number ({a}) to a fractional power ({b}) is not a "
                          "real number", node)
    return math.pow(a, b)


def _checked(value: int | float, node: Any) -> int | float:
    if isinstance(value, float) and math.isnan(value):
        raise BadConstant("this constant expression has no value (NaN)", node)
    if abs(value) > _LARGEST:
        raise _too_large(node)
    return value


def _too_large(node: Any) -> BadConstant:
    return BadConstant("this constant is too large for a real (beyond about 1.8e308)", node)


def _bad_call(func: str, x: int | float, node: Any) -> BadConstant:
    if func in ("exp", "expm1"):
        return _too_large(node)
    return BadConstant(f"{func}({x}) has no real value", node)
