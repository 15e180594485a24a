"""Discrete latents in the log density: each one's values enumerated all at once in a new
leading dimension, the terms that depend on it handed to the accumulator as terms of its
sum, and at the end one logsumexp each (the forward algorithm for a chain). Separate
because only the log density sums them out (compiler/passes/elimination.py chose the groups);
the samplers draw discrete latents like any other variable."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.emitter import str_tuple_code
from compiler.codegen.exprs import Scope, Unsupported, Value
from compiler.codegen.ragged import ragged_mask
from compiler.indexing import classify
from compiler.ir import GraphicalModel, Statement
from compiler.passes.supports import Support
from compiler.sizes import dim_text
from dsl.printer import format_expr


def is_discrete_latent(model: GraphicalModel, name: str) -> bool:
    """A discrete latent: summed out in the log density, drawn in the samplers."""
    v = model.variables[name]
    return v.role == "latent" and v.discrete


def enumeration_group_of(model: GraphicalModel, stmt: Statement) -> Any:
    """The discrete latent whose enumeration this statement's value carries, if any."""
    for group in model.enumerated.values():
        if stmt.id in group.terms:
            return group
    return None


def is_summed_out_chain(model: GraphicalModel, name: str) -> bool:
    group = model.enumerated.get(name)
    return group is not None and group.chain


def previous_step_value(ctx: ModuleContext, name: str, items: tuple[Any, ...], scope: Scope,
                        node: Any, read: Any) -> Value | None:
    """`z[t - 1]` (`z[n, t - 1]` for a chain per plate element) of a summed-out chain
    reads the dimension of the previous step."""
    v = ctx.model.variables[name]
    rank = len(v.shape or ())
    if len(items) < rank:
        return None
    f = classify(items[rank - 1], scope.all_scopes(), ctx.ints)
    if f.kind != "loop" or f.offset is None or f.offset.constant != -1:
        return None
    base = Value(f"{ctx.names[name]}__prev", (), rank, True)
    return ctx.exprs(read).index_value(base, items, scope, node, tuple(v.shape))  # type: ignore[arg-type]


def write_enumeration(ctx: ModuleContext, name: str) -> None:
    """The values a discrete latent takes, all at once in their own dimension."""
    group = ctx.model.enumerated[name]
    stmt = ctx.model.statements[group.statement]
    lo, hi = _int_bounds(ctx, stmt)
    per = f" per element of 'for {', '.join(p.var for p in group.plate)}'" \
        if group.plate and not group.chain else ""
    lo_text, hi_text = _bound_texts(ctx, stmt)
    ctx.out.comment(f"{ctx.where(stmt.span)}  {name}: discrete, summed out: each value "
                    f"{lo_text}..{hi_text}{per} in a new leading dimension")
    v = ctx.model.variables[name]
    py = ctx.names[name]
    if group.chain:
        ctx.out.comment(f"{name}[t] reads {name}[t - 1]: {name}[t] varies along the "
                        f"first dimension, {name}[t - 1] along the second "
                        f"({py}__prev)")
        ctx.out.line(f"{py}, {py}__prev = acc__.enumerate_chain({name!r}, "
                     f"data__.iota({lo}, {hi}), {ctx.shape_code(v.shape)})")
        return
    ctx.out.line(f"{py} = acc__.enumerate({name!r}, data__.iota({lo}, {hi}), "
                 f"{ctx.shape_code(v.shape)})")


def _bound_texts(ctx: ModuleContext, stmt: Statement) -> tuple[str, str]:
    """The lowest and highest value of a discrete latent as the model writes them (`K`,
    `length(p)`), for the comment a student reads; `_int_bounds` is the code."""
    s: Support = ctx.model.supports[stmt.target]
    binding = ctx.model.bindings[stmt.id]
    args = {p.name: a for p, a in zip(binding.params, binding.args, strict=True)}

    def text(b: Any) -> str:
        if isinstance(b, (int, float)):
            return str(int(b))
        if isinstance(b, str):  # "len:p": the length of the argument p
            arg = args.get(b[4:], next(iter(args.values())))
            typed = ctx.model.types.get(id(arg))
            return dim_text(typed.shape[-1]) if typed is not None and typed.shape \
                else f"length({format_expr(arg)})"
        return format_expr(b)
    return text(s.lower), text(s.upper)


def _int_bounds(ctx: ModuleContext, stmt: Statement) -> tuple[str, str]:
    """Code for the lowest and highest value of a discrete latent (known once data is
    loaded: compiler/passes/supports.py checks its bounds read only data)."""
    s: Support = ctx.model.supports[stmt.target]
    binding = ctx.model.bindings[stmt.id]
    args = {p.name: a for p, a in zip(binding.params, binding.args, strict=True)}
    scope = ctx.scope(stmt)
    ex = ctx.exprs()

    def code(b: Any) -> str:
        if isinstance(b, (int, float)):
            return repr(int(b))
        if isinstance(b, str):  # "len:p": the length of the argument p
            # the distribution's only argument when p is given another way (logits=)
            value = ex.expr(args.get(b[4:], next(iter(args.values()))), scope)
            return f"{ex.paren(value)}.shape[-1]"
        value = ex.expr(b, scope)
        if value.loops or value.rank:
            raise Unsupported("the bounds of a discrete latent must be the same for "
                              "every element", b)
        return value.code if value.number else f"int({value.code})"
    return code(s.lower), code(s.upper)


def enumerated_term(group: Any, stmt: Statement, code: str, ndims: int) -> str:
    """The accumulator call for a term with `ndims` trailing dims (loops, elements)."""
    if not group.chain:
        return f"acc__.enum_term({group.name!r}, {code}, ndims={ndims - group.keep})"
    start, timed = next((a, b) for i, a, b in group.steps if i == stmt.id)
    plates = len(group.plate) - 1  # the sequences' plates, before the steps
    kept = plates + 1 if timed else plates
    return (f"acc__.chain_term({group.name!r}, {code}, ndims={ndims - kept}, "
            f"start={start}, timed={timed})")


def check_plate_dims(value: Value, scope: Scope, group: Any, stmt: Statement) -> None:
    keep = min(len(scope.loops), group.keep) if group.chain else group.keep
    if value.loops[:keep] != scope.keys()[:keep]:
        raise Unsupported(f"this factor must vary over the plate of '{group.name}' to sum "
                          "it out", stmt.node)


def _chain_ends(ctx: ModuleContext, name: str, plates: int) -> tuple[Any, str] | None:
    """A chain over a ragged loop (`for t in 2..x[n]`): the bound as written and the code
    of each sequence's length, laid out over the plates; None if it is not ragged."""
    step = next(s for s in ctx.model.defining(name) if len(s.loops) == plates + 1)
    ragged = ctx.model.ragged_loops.get(step.loops[plates].id)
    if ragged is None:
        return None
    scope = Scope(tuple(ctx.model.scopes[lp.id] for lp in step.loops[:plates]))
    return ragged.bound, ctx.exprs().expr(ragged.bound, scope).code


def write_sum_out(ctx: ModuleContext) -> None:
    """The plan for the discrete latents, then one logsumexp each."""
    for name, group in ctx.model.enumerated.items():
        stmt = ctx.model.statements[group.statement]
        if group.chain:
            ctx.out.comment(f"{ctx.where(stmt.span)}  sum out the chain {name}: log sum "
                            "over all paths, the forward algorithm as a parallel "
                            "reduction over steps")
            plates = len(group.plate) - 1
            args = f", plates={plates}" if plates else ""
            ends = _chain_ends(ctx, name, plates)
            if ends is not None:
                ctx.out.comment(f"each sequence ends at {format_expr(ends[0])}: later steps "
                                "are padding, identity steps of the chain")
                args += f", lengths={ends[1]}"
            ctx.out.line(f"acc__.sum_out_chain({name!r}{args})")
            continue
        others = [t for t in dict.fromkeys(ctx.model.statements[i].target or "factor"
                                           for i in group.terms[1:]) if t != name]
        plate = ", ".join(p.var for p in group.plate)
        at = f"{name}[{plate}]" if plate else name
        each = f"for each {plate}, " if plate else ""
        ctx.out.comment(f"{ctx.where(stmt.span)}  sum out {name}: {each}log sum_k "
                        f"p({at} = k) p({', '.join(others) or '.'} | {at} = k), "
                        "a logsumexp over the leading dimension")
        mask = ragged_mask(ctx, stmt, ctx.scope(stmt), 0)
        ctx.out.line(f"acc__.sum_out({name!r}, {group.keep}, "
                     f"{str_tuple_code(list(group.observed))}"
                     + (f", mask={mask})" if mask else ")"))
