"""The plan for summing out discrete latents (rule 19): which factors each one enters and
along which plate it is enumerated.

Contract: `plan_elimination(model)` sets `model.enumerated[name]` for every discrete
latent: the plate loops it is indexed by, the statements whose value depends on it
(its own `~`, the factors and likelihoods that read it, the `=` nodes computed from it)
and the observed variables among them. The generated log density then gives the latent
one tensor dimension holding each of its values, computes those statements once for all
values at the same time, and sums the dimension out with logsumexp, element by element
along the plate:

    log p(x | theta) = sum_i log sum_k p(z_i = k | theta) p(x_i | z_i = k, theta)

This is exact when the statements of one latent touch no other discrete latent and
read it only at the same plate iteration (`x[i]` reads `z[i]`), which mixtures, naive
Bayes and change points do. A factor joining two discrete latents (a chain `z[t]` on
`z[t-1]`, two latents in one likelihood) is reported as not supported yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.indexing import LoopScope, classify
from compiler.ir import GraphicalModel, Statement
from compiler.shapes import int_env
from compiler.walk import children
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Problem


@dataclass(frozen=True)
class Enumerated:
    """One discrete latent and the factors it is summed out of."""

    name: str
    statement: int  # its `~`
    plate: tuple[LoopScope, ...]  # the loops indexing it (outer first); () for a scalar
    terms: tuple[int, ...]  # statements whose value depends on it, its `~` included
    deterministic: frozenset[str]  # `=` nodes computed from it
    observed: tuple[str, ...]  # observed variables among the terms' targets

    @property
    def keep(self) -> int:
        """Plate dims kept until the sum over values: p(x_i) is a sum per element i."""
        return len(self.plate)


def discrete_latents(model: GraphicalModel) -> list[str]:
    return [v.name for v in model.of_role("latent") if v.discrete]


def plan_elimination(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    model.enumerated = {}  # type: ignore[attr-defined]
    owner: dict[int, str] = {}
    for name in discrete_latents(model):
        try:
            group = _group(model, name)
        except Problem as exc:
            errors.append(exc.diagnostic)
            continue
        for sid in group.terms:
            if sid in owner:
                stmt = model.statements[sid]
                errors.append(Diagnostic(
                    f"this statement depends on two discrete latents, '{owner[sid]}' and "
                    f"'{name}'; summing out discrete latents that share a factor is not "
                    "supported yet", stmt.span,
                    "give one of them a continuous relaxation, or make one of them data"))
            owner[sid] = name
        model.enumerated[name] = group  # type: ignore[attr-defined]
    if errors:
        raise BgmError(errors, model.source)



def _scopes(model: GraphicalModel, stmt: Statement) -> tuple[LoopScope, ...]:
    return tuple(model.scopes[lp.id] for lp in stmt.loops)  # type: ignore[attr-defined]


def _group(model: GraphicalModel, name: str) -> Enumerated:
    defs = model.defining(name)
    if len(defs) != 1:
        raise Problem(f"the discrete latent '{name}' is defined by several statements; "
                       "summing out such a latent (a chain z[t] on z[t-1]) is not "
                       "supported yet", defs[1].span)
    own = defs[0]
    plate = _own_plate(model, own)
    derived: set[str] = set()
    changed = True
    while changed:  # `=` nodes computed from the latent, directly or not
        changed = False
        for s in model.statements:
            if s.kind == "assign" and s.target not in derived and \
                    model.variables[s.target].role == "deterministic" and \
                    (name in s.reads or s.reads & derived):  # type: ignore[index]
                derived.add(s.target)  # type: ignore[arg-type]
                changed = True
    watched = {name} | derived
    terms = [s for s in model.statements if s.id == own.id or (s.reads & watched)]
    sequential = model.sequential_logp | model.sequential_sample  # type: ignore[attr-defined]
    for s in terms:
        if any(lp.id in sequential for lp in s.loops):
            raise Problem(f"'{name}' is a discrete latent read inside a loop run step by "
                           "step; summing it out there is not supported yet", s.span)
        if s.id != own.id:
            _check_term(model, s, name, plate, watched)
    observed = tuple(s.target for s in terms if s.kind == "sample" and s.target and  # type: ignore[misc]
                     model.variables[s.target].role == "observed")
    return Enumerated(name, own.id, plate, tuple(s.id for s in terms), frozenset(derived),
                      tuple(dict.fromkeys(observed)))


def _own_plate(model: GraphicalModel, own: Statement) -> tuple[LoopScope, ...]:
    """`z ~ ...` or `z[i, j] ~ ...` inside `for i`, `for j`, each from 1: the latent is
    enumerated per element of its plate."""
    scopes = _scopes(model, own)
    items = own.node.target.items
    ints = int_env(model)
    ok = len(items) == len(scopes)
    for k, item in enumerate(items if ok else ()):
        f = classify(item, scopes, ints)
        ok = ok and f.kind == "loop" and f.loop is not None and f.loop.key == scopes[k].key \
            and f.offset is not None and f.offset.constant == 0 and scopes[k].lo.constant == 1
    if not ok:
        raise Problem(f"to sum out the discrete latent '{own.target}', define it element "
                       "by element over whole loops from 1 (z[i] inside 'for i in 1..N')",
                       own.node.target.span)
    return scopes


def _check_term(model: GraphicalModel, s: Statement, name: str,
                plate: tuple[LoopScope, ...], watched: set[str]) -> None:
    """A factor depending on the latent reads it (or what is computed from it) at the same
    element of its plate: its outer loops run over the plate's ranges and index it."""
    d = len(plate)
    scopes = _scopes(model, s)
    same = len(scopes) >= d and all(a.lo == b.lo and a.hi == b.hi
                                    for a, b in zip(scopes, plate, strict=False))
    where = f"'for {plate[0].var}'" if plate else ""
    if not same:
        raise Problem(f"this statement reads the discrete latent '{name}' (indexed by "
                       f"{where}) outside a loop over the same range; summing it out needs "
                       "each factor that reads it inside that plate", s.span)
    if d == 0:
        return
    ints = int_env(model)
    nodes = list(reads_of(s.expr, watched))
    if s.kind == "assign":
        nodes.append((s.target, s.node.target.items, s.node.target))
    for var, items, node in nodes:
        forms = [classify(i, scopes, ints) for i in items[:d]]
        ok = len(forms) == d and all(
            f.kind == "loop" and f.loop is not None and f.loop.key == scopes[k].key and
            f.offset is not None and f.offset.constant == 0 for k, f in enumerate(forms))
        if not ok:
            loops = ", ".join(sc.var for sc in scopes[:d])
            what = f"the discrete latent '{name}'" if var == name else \
                f"'{var}', computed from the discrete latent '{name}',"
            raise Problem(f"{what} must be read at the current element of its plate "
                           f"({var}[{loops}]) to be summed out", getattr(node, "span", s.span))


def reads_of(e: Any, names: set[str]) -> list[tuple[str, tuple[Any, ...], Any]]:
    """Each read of one of `names` in `e`: the name, its index items and the node."""
    if isinstance(e, n.Name):
        return [(e.id, (), e)] if e.id in names else []
    if isinstance(e, n.Index):
        base, items = e.base, list(e.items)
        while isinstance(base, n.Index):
            items = list(base.items) + items
            base = base.base
        if isinstance(base, n.Name) and base.id in names:
            return [(base.id, tuple(items), e)] + [r for item in items
                                                   for r in reads_of(item, names)]
    return [r for child in children(e) for r in reads_of(child, names)]
