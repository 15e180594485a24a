"""Ragged loops: `for t in 1..len[n]`, a loop whose last iteration is read from an int data
vector at the current element of the plates around it (sequences of different lengths).

Contract: `ragged_bound(model, loop, ints)` is called by the shape pass for a loop whose
upper bound is not a size. If the bound is `x[i, ...]` — `x` int data indexed by the
variables of loops around this one, outer first, each once — it records a `RaggedLoop` in
`model.ragged_loops` and returns the size the loop's dims get: a name standing for the
largest value of `x` (`x__max`, computed and checked once when the data is loaded; user
names never contain `__`). Otherwise it returns None and the usual "cannot be a size"
error stands.

What the rest of the compiler does with it: tensors over the loop are laid out over
lo..max(x), as over a rectangular loop, and every term of the log density inside it is
masked to exactly 0 at the iterations past x[i] (codegen/ragged.py), so padded data is
never read into the density: changing it changes nothing. A chain over a ragged loop gets
identity steps past each sequence's end (runtime/accumulate.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Loop
from compiler.sizes import NotASize, Size, size_of
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic
from dsl.printer import format_expr


@dataclass(frozen=True)
class RaggedLoop:
    """A loop `for var in lo..x[i, ...]`: its size name (the largest x), the data vector,
    the loops indexing it (outer first) and the bound as written."""

    size: str
    vector: str
    plates: tuple[int, ...]  # loop ids of the index items, outer first
    bound: Any  # the `x[i, ...]` node
    lo: Size


def size_name(vector: str) -> str:
    return f"{vector}__max"


def loop_end(loop: Loop, ints: dict[str, Any]) -> Size:
    """A loop's upper bound as a size once the shape pass has accepted it: a ragged end
    `x[n]` is the size `x__max` (for tools that read loops without the model's scopes)."""
    e = loop.range.hi
    if isinstance(e, n.Index) and isinstance(e.base, n.Name) and size_name(e.base.id) in ints:
        return Size.name(size_name(e.base.id))
    return size_of(e, ints)


def enclosing_loops(model: GraphicalModel, loop: Loop) -> tuple[Loop, ...]:
    """The loops around `loop`, outer first (read off a statement inside it)."""
    for stmt in model.statements:
        if loop in stmt.loops:
            return tuple(stmt.loops[:stmt.loops.index(loop)])
    return ()


def ragged_bound(model: GraphicalModel, loop: Loop, ints: dict[str, Any]) -> Size | None:
    """The size a ragged loop's dims get, or None if its bound is not `x[i, ...]`."""
    e = loop.range.hi
    if not isinstance(e, n.Index) or not isinstance(e.base, n.Name):
        return None
    v = model.variables.get(e.base.id)
    declared = v.declared_type if v is not None else None
    if v is None or v.role != "data" or declared is None or declared.base != "int" \
            or len(declared.dims) != len(e.items):
        return None
    around = {lp.var: lp for lp in enclosing_loops(model, loop)}
    order = [lp.id for lp in enclosing_loops(model, loop)]
    plates = []
    for item in e.items:
        if not isinstance(item, n.Name) or item.id not in around:
            return None
        plates.append(around[item.id].id)
    if len(set(plates)) != len(plates) or \
            [order.index(p) for p in plates] != sorted(order.index(p) for p in plates):
        return None
    try:
        lo = size_of(loop.range.lo, ints)
    except NotASize:  # the shape pass reports a bad lower bound itself
        return None
    if lo.constant is None:
        return None
    name = size_name(v.name)
    model.ragged_loops[loop.id] = RaggedLoop(name, v.name, tuple(plates), e, lo)
    ints[name] = None
    return Size.name(name)


def ragged_sizes(model: GraphicalModel) -> dict[str, tuple[str, int]]:
    """Each ragged size name: its data vector and the smallest lower bound of a loop it
    ends (every value must be at least that minus 1: an empty loop, never a backwards
    one)."""
    out: dict[str, tuple[str, int]] = {}
    for r in model.ragged_loops.values():
        lo = r.lo.constant if r.lo.constant is not None else 1
        prev = out.get(r.size)
        out[r.size] = (r.vector, lo if prev is None else max(prev[1], lo))
    return out


def check_ragged(model: GraphicalModel) -> None:
    """What a ragged loop cannot hold yet: a continuous latent defined inside it (its
    padded elements would have no density, an improper posterior). Data, `=` nodes,
    discrete latents (summed out with the padding masked) and chains are fine."""
    errors = []
    for stmt in model.statements:
        ragged = [lp for lp in stmt.loops if lp.id in model.ragged_loops]
        if not ragged or stmt.kind != "sample" or stmt.target is None:
            continue
        v = model.variables[stmt.target]
        if v.role == "latent" and not v.discrete:
            bound = model.ragged_loops[ragged[0].id].bound
            errors.append(Diagnostic(
                f"the continuous latent '{v.name}' is defined inside a loop ending at "
                f"{format_expr(bound)} (a ragged loop): its elements past the end would "
                "have no density; this is not supported yet", stmt.span,
                f"loop to the longest length instead, or make '{v.name}' data"))
    if errors:
        raise BgmError(errors, model.source)
