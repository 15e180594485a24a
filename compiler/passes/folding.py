"""The constant-folding pass: every constant part of an expression is evaluated once, at
`check`, exactly (compiler/consts.py), and every constant distribution argument is checked
against its parameter's support there, with a caret at the argument.

Contract: `fold_constants(model)` fills `model.folded` (id of an expression node -> its
value) for the largest constant sub-expressions that are not bare literals, so the code
generator writes their values as literals and never evaluates user arithmetic at run time.
Errors: a constant with no real value (consts.BadConstant), and a constant argument
outside its support (`Normal(0, -10)`, `Exponential(0)`, `Bernoulli(1.5)`).
"""
from __future__ import annotations

from typing import Any

from compiler import consts
from compiler.ir import GraphicalModel
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.walk import children
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic

# parameter support -> (test, what it must be)
_SUPPORTS = {
    "positive": (lambda x: x > 0, "positive (> 0)"),
    "nonnegative": (lambda x: x >= 0, "at least 0"),
    "unit": (lambda x: 0 <= x <= 1, "a probability (between 0 and 1)"),
    "int_nonneg": (lambda x: x >= 0 and float(x).is_integer(), "a whole number >= 0"),
}


# Parameters whose support includes 0 though the table calls them positive (its support
# kinds are also transforms): Poisson(0) puts all its mass on 0, as in Stan and torch.
_ZERO_ALLOWED = {("Poisson", "rate"): "nonnegative"}


def fold_constants(model: GraphicalModel) -> None:
    env = {k: v.value for k, v in model.variables.items() if v.role == "const"}
    errors: list[Diagnostic] = []
    for stmt in model.statements:
        # a loop variable named like a const hides it inside the loop
        local = {k: v for k, v in env.items() if k not in {lp.var for lp in stmt.loops}}
        _fold(stmt.expr, local, model.folded, errors)
        if stmt.kind == "sample":
            _check_bounds(getattr(stmt.node, "type", None), local, errors)
        binding = model.bindings.get(stmt.id) if stmt.kind == "sample" else None
        if binding is not None and binding.name in DISTRIBUTIONS and not errors:
            errors += _check_arguments(binding, local)
    for v in model.variables.values():
        if v.role != "const":
            _check_bounds(v.declared_type, env, errors)
    if errors:
        raise BgmError(errors, model.source)


def _check_bounds(t: n.Type | None, env: dict[str, Any], errors: list[Diagnostic]) -> None:
    """A declared type's constant bounds have a real value (`real<lower=-9^9^9>` is an
    error here, before supports reads the bound as a number)."""
    for bound in (t.lower, t.upper) if t is not None else ():
        if bound is None or not consts.is_constant(bound, env):
            continue
        try:
            consts.fold(bound, env)
        except consts.BadConstant as exc:
            diagnostic = Diagnostic(str(exc), getattr(exc.node, "span", None))
            if diagnostic not in errors:
                errors.append(diagnostic)


def _fold(e: Any, env: dict[str, Any], folded: dict[int, Any],
          errors: list[Diagnostic]) -> None:
    if isinstance(e, (n.Unary, n.Binary, n.Call)) and consts.is_constant(e, env):
        try:
            folded[id(e)] = consts.fold(e, env)
        except consts.BadConstant as exc:
            errors.append(Diagnostic(str(exc), getattr(exc.node, "span", None)))
        return
    if isinstance(e, n.Generator):  # its variable hides a const of the same name
        env = {k: v for k, v in env.items() if k != e.var.id}
    for child in children(e):
        _fold(child, env, folded, errors)


def _check_arguments(binding: Any, env: dict[str, Any]) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    values: dict[str, Any] = {}
    for param, arg in zip(binding.params, binding.args, strict=True):
        label = param.aliases[0] if param.aliases else param.name
        if param.support == "simplex" and isinstance(arg, n.Vector) and \
                all(consts.is_constant(i, env) for i in arg.items):
            items = [consts.fold(i, env) for i in arg.items]
            if min(items) < 0 or sum(items) <= 0:  # weights: normalised, as torch does
                errors.append(Diagnostic(
                    f"the {label} of {binding.name} must be weights (entries >= 0 with a "
                    "positive sum)", arg.span))
            continue
        if not consts.is_constant(arg, env):
            continue
        try:
            value = consts.fold(arg, env)
        except consts.BadConstant:
            continue  # reported by _fold
        values[param.name] = value
        test = _SUPPORTS.get(_ZERO_ALLOWED.get((binding.name, param.name), param.support))
        if test is not None and not test[0](value):
            errors.append(Diagnostic(f"the {label} of {binding.name} must be {test[1]}; "
                                     f"this is {value!r}", arg.span))
    if binding.name == "Uniform" and {"alpha", "beta"} <= values.keys() and \
            not values["alpha"] < values["beta"]:
        arg = binding.args[[p.name for p in binding.params].index("beta")]
        errors.append(Diagnostic(f"the upper bound of Uniform must exceed its lower bound "
                                 f"({values['alpha']!r}); this is {values['beta']!r}",
                                 arg.span))
    return errors
