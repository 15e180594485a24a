"""The methods that check data at loading, before anything else reads it: `check_sizes`
(the index and loop-range rules only the data decides, compiler/passes/ranges.py, and the
generators that have no value over an empty range) and `check_data` (observed values
inside the support of their distribution). Separate because they read only data and
sizes, never latents, and turn bad data into errors that name the .bgm line."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.emitter import tuple_code
from compiler.codegen.exprs import Scope, Unsupported
from compiler.codegen.node_walk import walk_nodes
from compiler.ir import Statement
from compiler.passes.ranges import ExprValueRule, LoopRule, SizeMatch, ValueRule
from compiler.sizes import Size
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.walk import calls, children, free_names
from dsl import nodes as n
from dsl.printer import format_expr, format_simple


def write_check_sizes(ctx: ModuleContext) -> None:
    """`check_sizes`: the index and range rules only the data decides
    (compiler/passes/ranges.py), checked before anything else reads the data."""
    rules = list(ctx.model.range_rules.values())
    ex = ctx.exprs()
    lines: list[str] = []
    needed: set[str] = set()
    for e, length in _nonempty_generators(ctx):
        where = repr(f"{ctx.file}:{e.span.line}:{e.span.column}")
        text = f"the number of terms of '{format_expr(e)}' (over none it has no value)"
        lines.append(f"rt.check_index({ex.size(length)}, None, (), {where}, {text!r})")
        needed |= set(length.names())
    if not rules and not lines:
        return
    for rule in rules:
        where = repr(f"{ctx.file}:{rule.span.line}:{rule.span.column}")
        if isinstance(rule, ValueRule):
            sizes = [rule.size]
            lines.append(f"rt.check_values(data__.get({rule.name!r}), {ex.size(rule.size)}, "
                         f"{where}, {rule.name!r}, {rule.text!r})")
        elif isinstance(rule, SizeMatch):
            sizes = [rule.a, rule.b]
            lines.append(f"rt.check_same({ex.size(rule.a)}, {ex.size(rule.b)}, "
                         f"{rule.broadcast}, {where}, {rule.text!r})")
        elif isinstance(rule, ExprValueRule):
            node = _index_nodes(ctx).get(rule.node)
            if node is None:
                continue
            value = ex.expr(node, Scope(tuple(rule.scopes)))  # type: ignore[arg-type]
            sizes = [rule.size]
            needed |= {x.id for x in free_names(node)
                       if x.id in ctx.model.variables and
                       ctx.model.variables[x.id].role == "data"}
            lines.append(f"rt.check_index_values({value.code}, {ex.size(rule.size)}, "
                         f"{where}, {rule.text!r})")
        elif isinstance(rule, LoopRule):
            sizes = [rule.lo, rule.hi]
            lines.append(f"rt.check_loop({ex.size(rule.lo)}, {ex.size(rule.hi)}, {where}, "
                         f"{rule.text!r})")
        else:
            lengths = [hi - lo + Size.const(1) for lo, hi in rule.loops]
            sizes = [rule.index, *lengths] + ([rule.size] if rule.size else [])
            size = "None" if rule.size is None else ex.size(rule.size)
            guards = tuple_code([ex.size(g) for g in lengths])
            lines.append(f"rt.check_index({ex.size(rule.index)}, {size}, {guards}, "
                         f"{where}, {rule.text!r})")
        needed |= {x for s in sizes for x in s.names()}
    o = ctx.out
    o.blank()
    with o.indent("def check_sizes(self, data__):"):
        o.line('"""Indices and loop ranges that depend on data sizes stay inside the '
               'declared sizes."""')
        for name in sorted(needed):
            o.line(f"{ctx.names[name]} = data__[{name!r}]")
        ctx.unpack_consts()
        o.lines(lines)


def _index_nodes(ctx: ModuleContext) -> dict[int, Any]:
    """Every expression node of the statements by id (for rules that name one)."""
    found: dict[int, Any] = {}
    stack = [r for stmt in ctx.model.statements
             for r in (stmt.expr, getattr(stmt.node, "target", None)) if r is not None]
    while stack:
        e = stack.pop()
        found[id(e)] = e
        stack.extend(children(e))
        stack.extend(getattr(e, "items", ()) if isinstance(e, n.Target) else ())
    return found


def _nonempty_generators(ctx: ModuleContext) -> Iterator[tuple[n.Generator, Size]]:
    """The generators that have no value over an empty range (mean, max, min and
    log_sum_exp; a sum of nothing is 0 and a product 1) whose length the data decides,
    with that length. An empty one the source fixes is an error here."""
    seen: set[int] = set()
    for stmt in ctx.model.statements:
        node = stmt.node
        roots = [getattr(node, a, None) for a in ("expr", "value", "dist")]
        target = getattr(node, "target", None)
        roots += list(getattr(target, "items", ()) or ())
        for root in roots:
            if root is None:
                continue
            for e in calls(root):
                if not isinstance(e, n.Generator) or id(e) in seen or \
                        e.func.id not in ("mean", "max", "min", "log_sum_exp") or \
                        id(e) not in ctx.model.scopes:
                    continue
                seen.add(id(e))
                length = ctx.model.scopes[id(e)].length
                if length.constant is not None:
                    if length.constant < 1:
                        raise Unsupported(f"'{e.func.id}' of an empty range has no value",
                                          e.range)
                    continue
                yield e, length


def write_check_data(ctx: ModuleContext) -> None:
    checks = []
    for stmt in ctx.model.statements:
        if stmt.kind == "sample" and stmt.target and ctx.model.variables[
                stmt.target].role in ("observed", "transformed_data"):
            code = _support_check(ctx, stmt)
            if code:
                checks.append((stmt, code))
    if not checks:
        return
    o = ctx.out
    o.blank()
    with o.indent("def check_data(self, data__):"):
        o.line('"""Observed values must lie in the support of their distribution."""')
        ctx.unpack_data()
        for stmt, code in checks:
            o.comment(f"{ctx.where(stmt.span)}  {format_simple(stmt.node)}")
            o.line(code)


def _support_check(ctx: ModuleContext, stmt: Statement) -> str | None:
    """The `rt.check_support` call for a `~` of data, when its distribution's support
    (an interval, integers or the simplex) has bounds that read only data."""
    binding = ctx.model.bindings[stmt.id]
    spec = DISTRIBUTIONS[binding.name]
    kind, *bounds = spec.support
    if kind not in ("interval", "int", "simplex"):
        return None
    args = {p.name: a for p, a in zip(binding.params, binding.args, strict=True)}
    scope = ctx.scope(stmt)
    ex = ctx.exprs()
    value = ex.read(stmt.target, stmt.node.target.items, scope, stmt.node.target)  # type: ignore[arg-type]
    codes = []
    loops = scope.keys()
    for b in bounds if kind != "simplex" else (None, None):
        if b is None or isinstance(b, (int, float)):
            codes.append(repr(b) if b is None else repr(float(b)))
            continue
        if isinstance(b, str) and b.startswith("len:"):
            arg = args.get(b[4:], next(iter(args.values())))  # probs or logits
            typed = ctx.model.types.get(id(arg))
            if typed is not None and typed.shape:  # its length is a size, latent or not
                codes.append(f"float({ex.size(typed.shape[-1])})")
                continue
            if not _reads_only_data(ctx, arg):
                return None
            codes.append(f"{ex.paren(ex.expr(arg, scope))}.shape[-1]")
            continue
        arg = args[b]  # type: ignore[index]
        if not _reads_only_data(ctx, arg):
            return None
        codes.append(ex.align(ex.expr(arg, scope), loops, value.rank))
    integer = kind == "int" and binding.name != "Bernoulli" or (
        binding.name == "Bernoulli" and value.integer)
    return (f"rt.check_support({stmt.target!r}, {ex.align(value, loops, value.rank)}, "
            f"{codes[0]}, {codes[1]}, integer={integer}, "
            f"where={ctx.where(stmt.span)!r})")


def _reads_only_data(ctx: ModuleContext, e: Any) -> bool:
    if any(isinstance(c, n.Call) and c.func.id in ctx.model.variables
           for c in walk_nodes(e)):  # a net's output
        return False
    return all(ctx.model.variables[x.id].role in ("data", "observed", "const",
                                                  "transformed_data")
               for x in free_names(e) if x.id in ctx.model.variables)
