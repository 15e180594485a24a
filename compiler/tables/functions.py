"""Built-in functions as plain data: arity and how the result's shape follows the arguments.

Shape rules ("kind"):
  elementwise   same shape as the (broadcast) arguments
  reduce        a scalar (reductions cover all elements, rule 17)
  vector        same shape, computed along the last dimension (softmax, cumsum, ...)
  dot           a scalar from two vectors
  build         a new array whose dims are the integer arguments (zeros, ones)
  special       handled by name in compiler/passes/shapes.py (eye, linspace, one_hot, cholesky, ...)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: str
    min_args: int
    max_args: int | None  # None: any number
    integer: bool = False  # result is integer-valued (no gradient)


def _f(name: str, kind: str, lo: int, hi: int | None = -1, integer: bool = False) -> FunctionSpec:
    return FunctionSpec(name, kind, lo, lo if hi == -1 else hi, integer)


_ELEMENTWISE_1 = ["exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sigmoid",
                  "inv_logit", "logit", "softplus", "tanh", "sin", "cos", "lgamma", "digamma",
                  "erf", "Phi", "log_sigmoid", "floor", "ceil", "round"]

_TABLE = (
    [_f(name, "elementwise", 1, integer=name in ("floor", "ceil", "round"))
     for name in _ELEMENTWISE_1]
    + [
        _f("pow", "elementwise", 2),
        _f("fmin", "elementwise", 2),
        _f("fmax", "elementwise", 2),
        _f("sum", "reduce", 1),
        _f("prod", "reduce", 1),
        _f("mean", "reduce", 1),
        _f("sd", "reduce", 1),
        _f("variance", "reduce", 1),
        _f("max", "reduce", 1),
        _f("min", "reduce", 1),
        _f("log_sum_exp", "reduce", 1),
        _f("norm", "reduce", 1),
        _f("softmax", "vector", 1),
        _f("log_softmax", "vector", 1),
        _f("cumsum", "vector", 1),
        _f("dot", "dot", 2),
        _f("zeros", "build", 1, None),
        _f("ones", "build", 1, None),
        _f("eye", "special", 1),
        _f("linspace", "special", 3),
        _f("one_hot", "special", 2),
        _f("cholesky", "special", 1),
        _f("transpose", "special", 1),
        _f("diag", "special", 1),
        _f("length", "special", 1, integer=True),
    ]
)

FUNCTIONS: dict[str, FunctionSpec] = {f.name: f for f in _TABLE}

# Reductions that accept a generator argument: sum(f(k) for k in a..b) (rule 17).
GENERATOR_REDUCTIONS = ("sum", "prod", "mean", "max", "min", "log_sum_exp")
