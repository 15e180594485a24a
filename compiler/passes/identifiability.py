"""Directions the data cannot tell apart: two latents with improper priors that every
statement reads only as one sum (or difference), as in `y ~ Normal(a + b, s)` with
`a ~ Flat()` and `b ~ Flat()`.

The posterior is then flat along `a - b` (or `a + b`): NUTS drifts along the ridge until
it hits its tree depth and R-hat reports the chains apart, a MAP "converges" at an
arbitrary point. It is a warning and not an error, because a `factor` or a later edit may
pin the direction, and because the sum itself is a fine quantity to report; but the user
should hear it before a long run, with both names.

Contract: `find_sum_ridges(model)` appends one warning Diagnostic per such pair to
`model.warnings`. What it recognises is deliberately syntactic and exact: scalar latents
with improper priors on the whole real line, each read as a bare name exactly once per
statement that reads either of them, both inside one chain of `+`/`-`. Anything else
(a product, an index, a function call around one of them) is not claimed to be a ridge.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

from compiler.ir import GraphicalModel
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.walk import children, free_names
from dsl import nodes as n
from dsl.diagnostics import Diagnostic, Note


def find_sum_ridges(model: GraphicalModel) -> None:
    flat = [v.name for v in model.of_role("latent")
            if not v.discrete and _improper_on_the_line(model, v.name)]
    for a, b in combinations(flat, 2):
        readers = [s for s in model.statements
                   if (a in s.reads or b in s.reads) and s.target not in (a, b)]
        if not readers:
            continue
        found = [_sum_of(s.expr, a, b) for s in readers]
        if any(f is None for f in found):
            continue
        signs = [f[0] for f in found if f is not None]
        combo = "sum" if signs[0] else "difference"
        if any(sign != signs[0] for sign in signs):
            continue  # a + b in one place and a - b in another pins both
        written = f"{a} + {b}" if signs[0] else f"{a} - {b}"
        other = f"{a} - {b}" if signs[0] else f"{a} + {b}"
        first = found[0][1] if found[0] is not None else None
        model.warnings.append(Diagnostic(
            f"'{a}' and '{b}' have improper priors and are read only as their {combo} "
            f"({written}): the data cannot tell them apart, so the posterior is flat along "
            f"{other} (a ridge; NUTS runs to its tree depth and R-hat stays high)",
            first.span if first is not None else None,
            f"give '{a}' or '{b}' a proper prior, or keep one of them and drop the other",
            notes=tuple(Note(f"'{name}' is given its improper prior here",
                             _prior_span(model, name)) for name in (a, b)),
            severity="warning"))


def _improper_on_the_line(model: GraphicalModel, name: str) -> bool:
    v = model.variables[name]
    if v.shape not in ((), None) or len(v.defs) != 1:
        return False
    stmt = model.statements[v.defs[0]]
    binding = model.bindings.get(stmt.id) if stmt.kind == "sample" else None
    spec = DISTRIBUTIONS.get(binding.name) if binding is not None else None
    support = model.supports.get(name)
    return bool(spec is not None and spec.improper and support is not None and
                support.kind == "real")


def _prior_span(model: GraphicalModel, name: str) -> Any:
    return model.statements[model.variables[name].defs[0]].node.dist.span


def _sum_of(expr: Any, a: str, b: str) -> tuple[bool, Any] | None:
    """(True, the chain) when `a` and `b` each occur once, as bare names with the same sign, in one
    chain of + and - (their sum is what is read); False for opposite signs (their
    difference); None when either occurs anywhere else."""
    for chain in _sum_chains(expr):
        terms = dict(_terms(chain, +1))
        if a in terms and b in terms:
            if _count(expr, a) == 1 and _count(expr, b) == 1:
                return terms[a] == terms[b], chain
            return None
    return None


def _sum_chains(expr: Any) -> list[Any]:
    """The outermost + / - expressions, wherever they sit in `expr`."""
    if isinstance(expr, n.Binary) and expr.op in "+-":
        return [expr]
    found = []
    for child in children(expr):
        found += _sum_chains(child)
    return found


def _terms(expr: Any, sign: int) -> list[tuple[str, int]]:
    if isinstance(expr, n.Binary) and expr.op in "+-":
        return _terms(expr.left, sign) + _terms(expr.right, sign if expr.op == "+" else -sign)
    if isinstance(expr, n.Unary) and expr.op == "-":
        return _terms(expr.operand, -sign)
    return [(expr.id, sign)] if isinstance(expr, n.Name) else []


def _count(expr: Any, name: str) -> int:
    return sum(1 for found in free_names(expr) if found.id == name)
