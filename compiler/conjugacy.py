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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Statement
from compiler.walk import free_names
from dsl import nodes as n
from dsl.printer import format_expr

_PAIRS = {
    "Beta": {"Bernoulli": "p", "Binomial": "p"},
    "Gamma": {"Poisson": "rate"},
    "Normal": {"Normal": "mu"},
    "Dirichlet": {"Categorical": "p"},
}


class NotConjugate(Exception):
    """Why the model has no closed-form posterior here (a message for the user)."""


@dataclass(frozen=True)
class Term:
    """One likelihood statement the latent enters: the observed variable and the other
    arguments by name, each a number or ("data", name) aligned with the observations."""

    observed: str
    family: str
    others: dict[str, Any]


@dataclass(frozen=True)
class Conjugate:
    latent: str
    prior: str
    prior_args: dict[str, Any]  # parameter name -> number or ("data", name)
    terms: tuple[Term, ...]

    def describe(self) -> str:
        likes = sorted({f"{t.family}({t.observed})" for t in self.terms})
        return f"{self.latent} ~ {self.prior}: conjugate to {', '.join(likes)}"


def conjugate_plan(model: GraphicalModel) -> list[Conjugate]:
    latents = model.of_role("latent")
    if not latents:
        raise NotConjugate("the model has no latent variables")
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
    b = model.bindings[stmt.id]  # type: ignore[attr-defined]
    return {p.name: a for p, a in zip(b.params, b.args, strict=True)}


def _one(model: GraphicalModel, name: str) -> Conjugate:
    defs = model.defining(name)
    if len(defs) != 1 or defs[0].loops or defs[0].node.target.items:
        raise NotConjugate(f"'{name}' is defined elementwise; exact posteriors cover a "
                           "latent defined by one statement without loops")
    prior_stmt = defs[0]
    prior = model.bindings[prior_stmt.id].name  # type: ignore[attr-defined]
    if prior_stmt.node.type is not None:
        raise NotConjugate(f"'{name}' has a declared type (a truncation): not conjugate")
    if prior not in _PAIRS:
        raise NotConjugate(f"'{name}' has a {prior} prior, which has no conjugate "
                           "likelihood bgm knows (Beta, Gamma, Normal, Dirichlet do)")
    if model.bindings[prior_stmt.id].form != 0:  # type: ignore[attr-defined]
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
    if stmt.kind != "sample" or model.variables[stmt.target].role != "observed":  # type: ignore[index]
        raise NotConjugate(f"{where}: '{name}' is read by a statement that is not a "
                           "likelihood of observed data")
    family = model.bindings[stmt.id].name  # type: ignore[attr-defined]
    wanted = _PAIRS[prior].get(family)
    if wanted is None or model.bindings[stmt.id].form != 0:  # type: ignore[attr-defined]
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
    others = {k: _simple(model, v, stmt, where) for k, v in args.items() if k != wanted}
    return Term(stmt.target, family, others)  # type: ignore[arg-type]


def _simple(model: GraphicalModel, expr: Any, stmt: Statement, where: str) -> Any:
    """A number, or ("data", name) for data read whole or at the statement's loop
    indices; anything else is not a closed form bgm computes."""
    if isinstance(expr, n.Number):
        return float(expr.value)
    if isinstance(expr, n.Unary) and isinstance(expr.operand, n.Number):
        return -float(expr.operand.value)
    base = expr.base if isinstance(expr, n.Index) else expr
    if isinstance(base, n.Name) and base.id in model.variables:
        v = model.variables[base.id]
        if v.role == "const":
            return float(v.value)
        loops = [lp.var for lp in stmt.loops]
        aligned = not isinstance(expr, n.Index) or \
            [getattr(i, "id", None) for i in expr.items] == loops
        if v.role in ("data", "transformed_data") and aligned:
            return ("data", base.id)
    names = [x.id for x in free_names(expr) if x.id in model.variables]
    latent = [x for x in names if model.variables[x].role == "latent"]
    why = f"depends on the latent '{latent[0]}'" if latent else \
        "is not a number or a data value"
    raise NotConjugate(f"{where}: '{format_expr(expr)}' {why}")
