"""Conjugacy detection from the graph, for `--method exact`.

Contract: `conjugate_plan(model)` returns one Conjugate per latent when every latent has
a conjugate prior for the likelihood terms it appears in, read directly as that
distribution's parameter; otherwise it raises NotConjugate with the reason (which latent,
which statement, why). Patterns are found from the graph and the distribution names,
never from the model's name:
  Beta prior      + Bernoulli(p) / Binomial(n, p) likelihoods
  Gamma prior     + Poisson(rate) likelihoods
  Normal prior    + Normal(mu, sigma) likelihoods with sigma known (data or constant)
  Dirichlet prior + Categorical(p) likelihoods

A likelihood statement covers only the elements its loops range over (`for i in 2..N`,
or two statements on disjoint ranges), so each Term carries its loop ranges and the
runtime uses exactly those observations; the sums over the whole data variable that an
earlier version computed counted elements no `~` generates, or counted some twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Statement
from compiler.sizes import int_env, size_of
from compiler.walk import free_names
from dsl import nodes as n
from dsl.printer import format_expr, format_type

_PAIRS = {
    "Beta": {"Bernoulli": "p", "Binomial": "p"},
    "Gamma": {"Poisson": "rate"},
    "Normal": {"Normal": "mu"},
    "Dirichlet": {"Categorical": "p"},
}


class NotConjugate(Exception):
    """Why the model has no closed-form posterior here (a message for the user)."""


@dataclass(frozen=True)
class DataRef:
    """A data variable read whole, or at the statement's loop indices (`x[i]` in
    `for i in ...: y[i] ~ Normal(mu, x[i])`)."""

    name: str
    at_loops: bool = False


@dataclass(frozen=True)
class VectorOf:
    """A vector literal of known values (a Dirichlet's concentration [1, 2, 3])."""

    items: tuple[Known, ...]


@dataclass(frozen=True)
class OnesOf:
    """`ones(K)`: K ones, K a number or a data size."""

    size: Known


# A value known before the data is seen: what a closed-form update can use.
Known = float | DataRef | VectorOf | OnesOf
# A size as plain terms: the sum of coefficient * product(names), e.g. ((("N",), 1),)
SizeTerms = tuple[tuple[tuple[str, ...], int], ...]


@dataclass(frozen=True)
class Term:
    """One likelihood statement the latent enters: the observed variable, its family and
    the other arguments by name.

    `ranges` holds one inclusive (lo, hi) pair per loop around the statement, outer
    first: the statement observes only those elements of the leading dimensions of
    `observed`."""

    observed: str
    family: str
    others: dict[str, Known]
    ranges: tuple[tuple[SizeTerms, SizeTerms], ...] = ()


@dataclass(frozen=True)
class Conjugate:
    latent: str
    prior: str
    prior_args: dict[str, Known]
    terms: tuple[Term, ...]

    def describe(self) -> str:
        likes = sorted({f"{t.family}({t.observed})" for t in self.terms})
        return f"{self.latent} ~ {self.prior}: conjugate to {', '.join(likes)}"


def conjugate_plan(model: GraphicalModel) -> list[Conjugate]:
    latents = model.of_role("latent")
    if not latents:
        raise NotConjugate("the model has no latent variables")
    # A point parameter or a net is not integrated; the exact posterior would leave it
    # unset (the runtime then failed with a NameError), so refuse with the reason.
    points = model.of_role("param", "net")
    if points:
        names = ", ".join(f"'{v.name}'" for v in points)
        verb = "is a point parameter" if len(points) == 1 else "are point parameters"
        raise NotConjugate(f"{names} {verb} (param or net), which a closed-form posterior "
                           "does not estimate")
    if model.of_role("deterministic"):
        names = ", ".join(v.name for v in model.of_role("deterministic"))
        raise NotConjugate(f"the latents enter the likelihood through computed nodes "
                           f"({names}), not directly as a distribution's parameter")
    plan = [_one(model, v.name) for v in latents]
    for stmt in model.statements:
        if stmt.kind == "factor":
            raise NotConjugate(f"line {stmt.span.line}: a 'factor' term has no conjugate "
                               "prior")
    return plan


def _binding(model: GraphicalModel, stmt: Statement) -> dict[str, Any]:
    b = model.bindings[stmt.id]
    return {p.name: a for p, a in zip(b.params, b.args, strict=True)}


def _one(model: GraphicalModel, name: str) -> Conjugate:
    defs = model.defining(name)
    if len(defs) != 1 or defs[0].loops or defs[0].node.target.items:
        raise NotConjugate(f"'{name}' is defined elementwise; exact posteriors cover a "
                           "latent defined by one statement without loops")
    prior_stmt = defs[0]
    prior = model.bindings[prior_stmt.id].name
    declared = prior_stmt.node.type
    if declared is not None:  # a vector type is not a truncation: say which it is
        if declared.lower is not None or declared.upper is not None or \
                declared.base not in ("real", "simplex"):
            raise NotConjugate(f"'{name}' has a declared type (a truncation): not "
                               "conjugate")
        raise NotConjugate(f"'{name}' is declared as '{format_type(declared)}'; exact "
                           "posteriors cover a scalar latent (or a Dirichlet's simplex) "
                           "whose shape comes from its prior alone")
    if prior not in _PAIRS:
        raise NotConjugate(f"'{name}' has a {prior} prior, which has no conjugate "
                           "likelihood bgm knows (Beta, Gamma, Normal, Dirichlet do)")
    if model.bindings[prior_stmt.id].form != 0:
        raise NotConjugate(f"'{name}''s prior uses an alternative parameterisation")
    prior_args = {k: _simple(model, v, prior_stmt, f"the prior of '{name}'")
                  for k, v in _binding(model, prior_stmt).items()}
    terms = []
    for stmt in model.statements:
        if name not in stmt.reads or stmt is prior_stmt:
            continue
        terms.append(_term(model, name, prior, stmt))
    if not terms:
        raise NotConjugate(f"'{name}' appears in no likelihood term")
    return Conjugate(name, prior, prior_args, tuple(terms))


def _term(model: GraphicalModel, name: str, prior: str, stmt: Statement) -> Term:
    where = f"line {stmt.span.line}"
    # transformed data observed by `~` (rule 13) is a likelihood like observed data
    if stmt.kind != "sample" or model.variables[stmt.target].role not in (  # type: ignore[index]
            "observed", "transformed_data"):
        raise NotConjugate(f"{where}: '{name}' is read by a statement that is not a "
                           "likelihood of observed data")
    family = model.bindings[stmt.id].name
    wanted = _PAIRS[prior].get(family)
    if wanted is None or model.bindings[stmt.id].form != 0:
        raise NotConjugate(f"{where}: a {prior} prior is not conjugate to "
                           f"{family} as written")
    args = _binding(model, stmt)
    arg = args[wanted]
    if not (isinstance(arg, n.Name) and arg.id == name):
        raise NotConjugate(f"{where}: '{name}' must be the {family}'s {wanted} itself, "
                           f"not '{format_expr(arg)}'")
    items = stmt.node.target.items
    loops = [lp.var for lp in stmt.loops]
    if [getattr(i, "id", None) for i in items] != loops:
        raise NotConjugate(f"{where}: the observed variable must be indexed by its loops "
                           "in order")
    others = {}
    for k, v in args.items():
        if k == wanted:
            continue
        try:
            others[k] = _simple(model, v, stmt, where)
        except NotConjugate as exc:  # say which parameter must be known, and why
            raise NotConjugate(f"{exc}: a {prior} prior on '{name}' is conjugate to a "
                               f"{family} likelihood only when its {k} is known (data or "
                               "a constant)") from None
    ints = int_env(model)
    if any(lp.id in model.ragged_loops for lp in stmt.loops):
        raise NotConjugate(f"{where} runs over a loop ending at a data value (a ragged "
                           "loop); closed forms here count rectangular ranges")
    ranges = tuple((size_of(lp.range.lo, ints).terms, size_of(lp.range.hi, ints).terms)
                   for lp in stmt.loops)
    return Term(str(stmt.target), family, others, ranges)


def _simple(model: GraphicalModel, expr: Any, stmt: Statement, where: str) -> Known:
    """A number, data read whole or at the statement's loop indices, a vector literal of
    such values or `ones(size)`; anything else is not a closed form bgm computes.
    (Vector literals and `ones(K)` are how LANGUAGE.md writes a Dirichlet's parameter;
    they used to be refused as "not a number or a data value".)"""
    if isinstance(expr, n.Number):
        return float(expr.value)
    if isinstance(expr, n.Unary) and isinstance(expr.operand, n.Number):
        return -float(expr.operand.value)
    if isinstance(expr, n.Vector) and not stmt.loops:
        return VectorOf(tuple(_simple(model, i, stmt, where) for i in expr.items))
    if isinstance(expr, n.Call) and expr.func.id == "ones" and len(expr.args) == 1 and \
            not expr.kwargs and not stmt.loops:
        size = _simple(model, expr.args[0], stmt, where)
        if isinstance(size, float) or (isinstance(size, DataRef) and not size.at_loops):
            return OnesOf(size)
    base = expr.base if isinstance(expr, n.Index) else expr
    if isinstance(base, n.Name) and base.id in model.variables:
        v = model.variables[base.id]
        if v.role == "const":
            return float(v.value)
        loops = [lp.var for lp in stmt.loops]
        aligned = not isinstance(expr, n.Index) or \
            [getattr(i, "id", None) for i in expr.items] == loops
        if v.role in ("data", "transformed_data") and aligned:
            return DataRef(base.id, at_loops=isinstance(expr, n.Index))
    names = [x.id for x in free_names(expr) if x.id in model.variables]
    latent = [x for x in names if model.variables[x].role == "latent"]
    why = "is a latent variable" if isinstance(expr, n.Name) and expr.id in latent else \
        f"depends on the latent '{latent[0]}'" if latent else \
        "is not a number or a data value"
    raise NotConjugate(f"{where}: '{format_expr(expr)}' {why}")
