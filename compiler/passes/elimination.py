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
Bayes and change points do. A first-order chain (`z[t] ~ Categorical(A[z[t-1]])`, a
hidden Markov model) gets two dimensions, z[t] and z[t-1], and its factors are summed
by the forward algorithm (runtime/hmm.py). A factor joining two different discrete
latents is reported as not supported yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.indexing import LoopScope, classify
from compiler.ir import GraphicalModel, Statement
from compiler.sizes import int_env
from compiler.walk import children
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Problem


@dataclass(frozen=True)
class Enumerated:
    """One discrete latent and the factors it is summed out of."""

    name: str
    statement: int  # its `~` (for a chain: the one defining its first element)
    plate: tuple[LoopScope, ...]  # the loops indexing it (outer first); () for a scalar
    terms: tuple[int, ...]  # statements whose value depends on it, its `~` included
    deterministic: frozenset[str]  # `=` nodes computed from it
    observed: tuple[str, ...]  # observed variables among the terms' targets
    chain: bool = False  # z[t] depends on z[t-1]: summed by the forward algorithm
    # chain only: statement id -> (0-based first step it covers, whether it spans a loop)
    steps: tuple[tuple[int, int, bool], ...] = ()

    @property
    def keep(self) -> int:
        """Plate dims kept until the sum over values: p(x_i) is a sum per element i."""
        return len(self.plate)


def discrete_latents(model: GraphicalModel) -> list[str]:
    return [v.name for v in model.of_role("latent") if v.discrete]


def plan_elimination(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    model.enumerated = {}
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
        model.enumerated[name] = group
    if errors:
        raise BgmError(errors, model.source)



def _scopes(model: GraphicalModel, stmt: Statement) -> tuple[LoopScope, ...]:
    return tuple(model.scopes[lp.id] for lp in stmt.loops)


def _group(model: GraphicalModel, name: str) -> Enumerated:
    defs = model.defining(name)
    if len(defs) != 1 or name in defs[0].reads:
        return _chain(model, name, defs)
    own = defs[0]
    plate = _own_plate(model, own)
    derived = _derived(model, name)
    watched = {name} | derived
    terms = [s for s in model.statements if s.id == own.id or (s.reads & watched)]
    _not_step_by_step(model, name, terms)
    for s in terms:
        if s.id != own.id:
            _check_term(model, s, name, plate, watched)
    return Enumerated(name, own.id, plate, tuple(s.id for s in terms), frozenset(derived),
                      _observed(model, terms))


def _observed(model: GraphicalModel, terms: list[Statement]) -> tuple[str, ...]:
    found = [s.target for s in terms if s.kind == "sample" and s.target and
             model.variables[s.target].role == "observed"]
    return tuple(dict.fromkeys(found))  # type: ignore[arg-type]


def _not_step_by_step(model: GraphicalModel, name: str, terms: list[Statement]) -> None:
    sequential = model.sequential_logp
    for s in terms:
        if any(lp.id in sequential for lp in s.loops):
            raise Problem(f"'{name}' is a discrete latent read inside a loop run step by "
                          "step; summing it out there is not supported yet", s.span)


def _derived(model: GraphicalModel, name: str) -> set[str]:
    """`=` nodes computed from the latent, directly or not."""
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
    return derived


def _chain(model: GraphicalModel, name: str, defs: list[Statement]) -> Enumerated:
    """`z[1] ~ ...` and `for t in 2..T: z[t] ~ f(z[t-1])`: a first-order chain over the
    whole of z, summed out by the forward algorithm. Every other factor reads z (or what
    is computed from it) at its loop's t or t - 1, or at a constant index outside loops.

    With plates around it (`for n in 1..N: z[n, 1] ~ ...; for t in 2..T: z[n, t] ~
    f(z[n, t - 1])`) it is one chain per element of the plates, its step index last:
    every factor reads it at the current element of each plate (`z[n, t]`), and the
    forward algorithm runs batched over the plates."""
    ints = int_env(model)
    v = model.variables[name]
    unsupported = Problem(
        f"the discrete latent '{name}' is defined by several statements in a way bgmc "
        "cannot sum out yet: a chain is written 'z[1] ~ ...' and 'for t in 2..T: z[t] ~ "
        "...(z[t - 1])', or per sequence 'z[n, 1] ~ ...' and 'z[n, t] ~ ...(z[n, t - 1])' "
        "inside 'for n in 1..N'", defs[-1].span)
    shape = tuple(v.shape or ())
    if not shape or len(defs) != 2:
        raise unsupported
    p = len(shape) - 1  # the plate dims before the step index
    first = [s for s in defs if len(s.loops) == p]
    step = [s for s in defs if len(s.loops) == p + 1]
    if len(first) != 1 or len(step) != 1:
        raise unsupported
    plate = _chain_plate(model, first[0], shape, ints)
    step_scopes = _scopes(model, step[0])
    other = _chain_plate(model, step[0], shape, ints)
    if plate is None or other is None or \
            [(a.lo, a.hi) for a in plate] != [(b.lo, b.hi) for b in other]:
        raise unsupported
    first_form = classify(first[0].node.target.items[p], _scopes(model, first[0]), ints)
    scope = step_scopes[p]
    form = classify(step[0].node.target.items[p], step_scopes, ints)
    if first_form.kind != "scalar" or first_form.lo is None or first_form.lo.constant != 1 \
            or form.kind != "loop" or form.loop is None or form.loop.key != scope.key \
            or form.offset is None or form.offset.constant != 0 \
            or scope.lo.constant != 2 or scope.hi != shape[p]:
        raise unsupported
    derived = _derived(model, name)
    watched = {name} | derived
    terms = [s for s in model.statements if s.id in (first[0].id, step[0].id) or
             (s.reads & watched)]
    _not_step_by_step(model, name, terms)
    steps = []
    for s in terms:
        steps.append((s.id, *_chain_step(model, s, name, watched, ints, plate)))
    return Enumerated(name, first[0].id, plate + (scope,), tuple(s.id for s in terms),
                      frozenset(derived), _observed(model, terms), chain=True,
                      steps=tuple(steps))


def _chain_plate(model: GraphicalModel, s: Statement, shape: tuple[Any, ...],
                 ints: dict[str, Any]) -> tuple[LoopScope, ...] | None:
    """The plate loops of one definition of a chain: its outer loops, each over a whole
    dim from 1 and indexing that dim (`z[n, t]` inside `for n in 1..N`); None if not."""
    p = len(shape) - 1
    scopes = _scopes(model, s)
    items = s.node.target.items
    if len(items) != len(shape) or len(scopes) < p:
        return None
    for k in range(p):
        f = classify(items[k], scopes, ints)
        if f.kind != "loop" or f.loop is None or f.loop.key != scopes[k].key or \
                f.offset is None or f.offset.constant != 0 or scopes[k].lo.constant != 1 \
                or scopes[k].hi != shape[k]:
            return None
    return scopes[:p]


def _chain_step(model: GraphicalModel, s: Statement, name: str, watched: set[str],
                ints: dict[str, Any], plate: tuple[LoopScope, ...] = ()) -> tuple[int, bool]:
    """Where a factor of a chain sits: (its first step, 0-based; whether it spans a loop).
    With plates, its outer loops run over the plates' ranges and index them first."""
    p = len(plate)
    scopes = _scopes(model, s)
    nodes = list(reads_of(s.expr, watched))
    if s.kind in ("assign", "sample") and s.target in watched:
        nodes.append((s.target, s.node.target.items, s.node.target))
    if len(scopes) < p or any((a.lo, a.hi) != (b.lo, b.hi)
                              for a, b in zip(scopes, plate, strict=False)):
        where = ", ".join(f"'for {sc.var}'" for sc in plate)
        raise Problem(f"this statement reads the chain '{name}' (one per element of "
                      f"{where}) outside loops over the same ranges; summing it out needs "
                      "each factor that reads it inside them", s.span)
    for var, items, node in nodes:
        forms = [classify(i, scopes, ints) for i in items[:p]]
        if len(forms) < p or not all(
                f.kind == "loop" and f.loop is not None and f.loop.key == scopes[k].key and
                f.offset is not None and f.offset.constant == 0 for k, f in enumerate(forms)):
            loops = ", ".join(sc.var for sc in scopes[:p])
            raise Problem(f"'{var}' must be read at the current element of its plate "
                          f"({var}[{loops}, ...]) to be summed out",
                          getattr(node, "span", s.span))
    here = scopes[p:]
    if not here:
        at = set()
        for var, items, node in nodes:
            f = classify(items[p], scopes, ints) if len(items) > p else None
            if f is None or f.kind != "scalar" or f.lo is None or f.lo.constant is None or \
                    (var != name and len(items) != p + 1):
                index = ", ".join([sc.var for sc in plate] + ["1"])
                raise Problem(f"outside a loop over its steps, the chain '{name}' can be read "
                              f"only at a constant step ({name}[{index}])",
                              getattr(node, "span", s.span))
            at.add(f.lo.constant - 1)
        if len(at) != 1:
            raise Problem(f"this statement reads the chain '{name}' at several steps; "
                          "summing it out is not supported here yet", s.span)
        return at.pop(), False
    loop = here[0]
    for var, items, node in nodes:
        f = classify(items[p], scopes, ints) if len(items) > p else None
        lag = None if f is None or f.kind != "loop" or f.loop is None or f.offset is None \
            or f.loop.key != loop.key else f.offset.constant
        if lag not in (0, -1) or (lag == -1 and var != name):
            at = ", ".join([sc.var for sc in plate] + [loop.var])
            prev = ", ".join([sc.var for sc in plate] + [f"{loop.var} - 1"])
            raise Problem(f"'{var}' must be read at the current step ({var}[{at}]) "
                          f"or, for the chain itself, the previous one ({name}[{prev}])"
                          " to be summed out by the forward algorithm",
                          getattr(node, "span", s.span))
    if loop.lo.constant is None:
        raise Problem(f"a loop over the chain '{name}' must start at a constant",
                      s.loops[p].span)
    return loop.lo.constant - 1, True


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
