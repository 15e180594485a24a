"""Where a statement's value goes in the generated function: a plain local when the
statement defines the whole variable, an `rt.Steps` filled in a step-by-step loop, or an
`rt.Parts` assembled from several statements; reading a variable while it is still being
computed step by step; and recording each finished value (`draws__[...]` in samplers,
`acc__.deterministic` in the log density). Separate because the log density, the samplers
and transformed data all store values this one way."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from compiler.codegen.context import FunctionStorage, ModuleContext
from compiler.codegen.emitter import tuple_code
from compiler.codegen.enumeration import is_summed_out_chain, previous_step_value
from compiler.codegen.exprs import ExprCompiler, Scope, Unsupported, Value
from compiler.codegen.plan import Unit
from compiler.indexing import classify
from compiler.ir import Statement
from compiler.sizes import Size


def begin_function(ctx: ModuleContext, units: list[Unit]) -> None:
    """Create storage for variables defined step by step or in several parts."""
    ctx.storage = storage = FunctionStorage(
        step_by_step={v for u in units if u.kind == "sequential" for v in u.sequential_vars})
    for u in units:
        if u.kind == "sequential":
            storage.step_dim.update(_step_dims(ctx, u))
    for u in units:
        for s in ([u.statement] if u.statement else u.body):
            if s is not None and s.target is not None and (
                    s.kind == "assign" or u.kind == "sequential" or ctx.sampling):
                storage.statements_left[s.target] = storage.statements_left.get(s.target, 0) + 1
    for name in sorted(storage.step_by_step):
        v = ctx.model.variables[name]
        length = ctx.exprs().size(v.shape[storage.step_dim.get(name, 0)])  # type: ignore[index]
        given = ""
        if ctx.sampling and v.role == "observed":
            # elements no `~` generates (an AR(K)'s first K) come from the data (rule 24)
            given = f", given={ctx.names[name]}"
        p = storage.step_dim.get(name, 0)
        after = f", after={len(v.shape) - 1 - p}" if p else ""  # type: ignore[arg-type]
        ctx.out.line(f"{ctx.names[name]}__steps = rt.Steps({name!r}, {length}{given}{after})")


def store_value(ctx: ModuleContext, stmt: Statement, value: Value, scope: Scope,
                ex: ExprCompiler) -> None:
    """Code putting a statement's value in its variable: into its steps, as the whole
    variable, or as one part of it."""
    o = ctx.out
    storage = ctx.storage
    name = stmt.target
    assert name is not None
    py = ctx.names[name]
    v = ctx.model.variables[name]
    if name in storage.step_by_step:
        index = _step_index(ctx, stmt, scope, ex)
        after = len(v.shape) - 1 - storage.step_dim.get(name, 0)  # type: ignore[arg-type]
        o.line(f"{py}__steps[{index}] = {ex.align(value, scope.keys(), value.rank)}")
        _finish(ctx, name, lambda: f"{py} = {py}__steps.stack({after})")
        return
    if _defines_whole_variable(ctx, stmt, scope) and storage.statements_left.get(name, 1) <= 1:
        aligned = ex.align(value, scope.keys(), value.rank)
        if len(value.loops) < len(scope.loops) or value.number:
            shape = draw_shape(ctx, stmt, scope, ex)
            aligned = f"rt.fill({aligned}, {shape}, data__)"
        o.line(f"{py} = {aligned}")
        _record_value(ctx, name)
        storage.statements_left[name] = 0
        return
    if name not in storage.parts_started:
        o.line(f"{py}__parts = rt.Parts({ctx.shape_code(v.shape)})")
        storage.parts_started.add(name)
    index = _parts_index(ctx, stmt, scope, ex)
    o.line(f"{py}__parts.put({index}, {ex.align(value, scope.keys(), value.rank)}, "
           f"{len(scope.loops) + value.rank})")
    _finish(ctx, name, lambda: f"{py} = {py}__parts.build()")


def _finish(ctx: ModuleContext, name: str, line: Any) -> None:
    storage = ctx.storage
    storage.statements_left[name] = storage.statements_left.get(name, 1) - 1
    if storage.statements_left[name] > 0:
        return
    if storage.in_step_loop and name in storage.step_by_step:
        storage.after_step_loop.append((name, line))  # stacked once, after the loop
        return
    ctx.out.line(line())
    _record_value(ctx, name)
    storage.completed.add(name)


@contextmanager
def stacking_after_step_loop(ctx: ModuleContext) -> Iterator[None]:
    """Around a step-by-step loop: the variables it completes are stacked once, after it."""
    storage = ctx.storage
    storage.in_step_loop, storage.after_step_loop = True, []
    yield
    storage.in_step_loop = False
    for name, line in storage.after_step_loop:
        ctx.out.line(line())
        _record_value(ctx, name)
        storage.completed.add(name)
    storage.after_step_loop = []


def _record_value(ctx: ModuleContext, name: str) -> None:
    """A variable's finished value: a draw in samplers (only latents in the guide's), a
    deterministic value the log density reports (unless it varies with a summed-out
    latent)."""
    role = ctx.model.variables[name].role
    if ctx.drawing_guide and role != "latent":
        return  # the guide returns the latents it draws
    if ctx.sampling:
        ctx.out.line(f"draws__[{name!r}] = {ctx.names[name]}")
    elif role == "deterministic" and not any(
            name in g.deterministic for g in ctx.model.enumerated.values()):
        ctx.out.line(f"acc__.deterministic({name!r}, {ctx.names[name]})")


def _defines_whole_variable(ctx: ModuleContext, stmt: Statement, scope: Scope) -> bool:
    """The statement defines the whole variable at once: indexed by its loops' variables
    in order, each loop over all of its dim (`x[i, j]`, i in 1..I, j in 1..J), and it is
    the variable's only definition."""
    v = ctx.model.variables[stmt.target]  # type: ignore[index]
    items = stmt.node.target.items
    forms = [classify(i, scope.all_scopes(), ctx.ints) for i in items]
    if len(forms) != len(scope.loops) or len(v.defs) != 1 or scope.sequential:
        return False
    for f, s, dim in zip(forms, scope.loops, v.shape or (), strict=False):
        if f.kind != "loop" or f.loop is None or f.loop.key != s.key:
            return False
        if (f.offset or Size.const(0)).constant != 0 or s.lo.constant != 1 or s.hi != dim:
            return False
    return True


def draw_shape(ctx: ModuleContext, stmt: Statement, scope: Scope, ex: ExprCompiler) -> str:
    """Code for the shape of a statement's left side over its loops (loop dims first)."""
    v = ctx.model.variables[stmt.target]  # type: ignore[index]
    dims = [ex.size(s.length, scope) for s in scope.loops]
    items = stmt.node.target.items
    forms = [classify(i, scope.all_scopes(), ctx.ints) for i in items]
    shape = v.shape or ()
    for f, d in zip(forms, shape, strict=False):
        if f.kind == "slice":
            dims.append(ex.size(f.hi - f.lo + Size.const(1), scope))  # type: ignore[operator]
        elif f.kind == "full":
            dims.append(ex.size(d, scope))
    dims += [ex.size(d, scope) for d in shape[len(items):]]
    return tuple_code(dims)


def _parts_index(ctx: ModuleContext, stmt: Statement, scope: Scope, ex: ExprCompiler) -> str:
    forms = [classify(i, scope.all_scopes(), ctx.ints) for i in stmt.node.target.items]
    entries = []
    for f in forms:
        if f.kind == "loop" and f.loop is not None and f.offset is not None:
            if f.loop.var in scope.sequential:
                entries.append(ex.size(f.loop.lo + f.offset - Size.const(1), scope)
                               .replace(f.loop.var, scope.sequential[f.loop.var]))
                continue
            start = f.loop.lo + f.offset - Size.const(1)
            stop = f.loop.hi + f.offset
            entries.append(f"slice({ex.size(start, scope)}, {ex.size(stop, scope)})")
        elif f.kind == "scalar":
            entries.append(ex.size(f.lo - Size.const(1), scope))  # type: ignore[operator]
        elif f.kind == "slice":
            entries.append(f"slice({ex.size(f.lo - Size.const(1), scope)}, "  # type: ignore[operator]
                           f"{ex.size(f.hi, scope)})")  # type: ignore[arg-type]
        elif f.kind == "full":
            entries.append("slice(None)")
        else:
            raise Unsupported("the left side must be indexed by loop variables plus or "
                              "minus a constant, or by constants (rule 16)", f.node)
    return tuple_code(entries)


def _step_dims(ctx: ModuleContext, u: Unit) -> dict[str, int]:
    """Where the step loop indexes each variable of a step-by-step loop: after the
    plate loops around it (`y[n, t]` in `for n: for t`), 0 when it comes first."""
    out: dict[str, int] = {}
    for s in u.body:
        if s.target not in u.sequential_vars or s.target in out:
            continue
        scopes = tuple(ctx.model.scopes[lp.id] for lp in s.loops)
        for k, item in enumerate(s.node.target.items):
            f = classify(item, scopes, ctx.ints)
            if f.kind == "loop" and f.loop is not None and u.loop is not None \
                    and f.loop.key == u.loop.id:
                out[s.target] = k  # type: ignore[index]
                break
    return out


def _plate_items(ctx: ModuleContext, name: str, items: tuple[Any, ...], scope: Scope,
                 node: Any) -> tuple[int, ...]:
    """The vectorised plate loops indexing a step-by-step variable before its step index:
    each must be the loop's own variable over the whole dim, outer loops first, so that a
    step's value is laid out over those loops as the stored steps are."""
    p = ctx.storage.step_dim.get(name, 0)
    v = ctx.model.variables[name]
    keys = []
    for k, item in enumerate(items[:p]):
        f = classify(item, scope.all_scopes(), ctx.ints)
        whole = f.kind == "loop" and f.loop is not None and f.offset is not None and \
            f.offset.constant == 0 and f.loop.var not in scope.sequential and \
            f.loop.lo.constant == 1 and f.loop.hi == v.shape[k]  # type: ignore[index]
        if not whole or (keys and scope.keys().index(f.loop.key) <  # type: ignore[union-attr]
                         scope.keys().index(keys[-1])):
            raise Unsupported(f"'{name}' is computed step by step along its dim {p + 1}; "
                              f"index its dims before that by loops over all of each "
                              f"(as in {name}[n, t - 1] inside 'for n in 1..N')", node)
        keys.append(f.loop.key)  # type: ignore[union-attr]
    return tuple(keys)


def _step_index(ctx: ModuleContext, stmt: Statement, scope: Scope, ex: ExprCompiler) -> str:
    items = stmt.node.target.items
    if not items:  # `y: real[2] ~ ...` beside `y[t] ~ ...` computed step by step
        raise Unsupported(f"'{stmt.target}' is defined whole here, but element by "
                          "element by another statement", stmt.node.target)
    p = ctx.storage.step_dim.get(stmt.target, 0)  # type: ignore[arg-type]
    if len(items) <= p:
        raise Unsupported(f"'{stmt.target}' is computed step by step along its dim {p + 1};"
                          " define it element by element there", stmt.node.target)
    keys = _plate_items(ctx, stmt.target, items, scope, stmt.node.target)  # type: ignore[arg-type]
    if keys != scope.keys()[:len(keys)]:
        raise Unsupported(f"'{stmt.target}' is computed step by step; its plate loops must "
                          "be the outermost ones around it", stmt.node.target)
    f = classify(items[p], scope.all_scopes(), ctx.ints)
    if f.kind == "loop" and f.loop is not None and f.loop.var in scope.sequential:
        return ex.size(Size.name(f.loop.var) + (f.offset or Size.const(0)), scope)
    if f.kind == "scalar":
        return ex.size(f.lo, scope)  # type: ignore[arg-type]
    raise Unsupported("a variable computed step by step must be indexed first by the "
                      "loop variable or a constant", items[0])


def step_reader(ctx: ModuleContext) -> Any:
    """The reader expressions use (exprs.py) for variables stored step by step and not yet
    stacked, and for the previous step of a summed-out chain."""
    steps = ctx.storage.step_by_step

    def read(name: str, items: tuple[Any, ...], scope: Scope, node: Any) -> Value | None:
        if not ctx.sampling and items and is_summed_out_chain(ctx.model, name):
            return previous_step_value(ctx, name, items, scope, node, read)
        if name not in steps or name in ctx.storage.completed:
            return None
        if not items:
            raise Unsupported(f"'{name}' is read whole while it is computed step by step",
                              node)
        ex = ctx.exprs(read)
        v = ctx.model.variables[name]
        p = ctx.storage.step_dim.get(name, 0)
        if len(items) <= p:
            raise Unsupported(f"'{name}' is computed step by step along its dim {p + 1}; "
                              "read it element by element there", node)
        plates = _plate_items(ctx, name, items, scope, node)
        rank = len(v.shape) - 1 - p  # type: ignore[arg-type]
        f = classify(items[p], scope.all_scopes(), ctx.ints)
        if f.kind == "loop" and f.loop is not None and f.loop.var in scope.sequential:
            index = ex.size(Size.name(f.loop.var) + (f.offset or Size.const(0)), scope)
        elif f.kind == "scalar":
            index = ex.size(f.lo, scope)  # type: ignore[arg-type]
        elif f.kind == "gather" and len(items) == 1 and p == 0:
            # `y[t - k]` with k a generator variable: earlier steps gathered over k
            at = ex.expr(items[0], scope)
            if not at.integer or at.rank != 0:
                raise Unsupported(f"'{name}' is computed step by step; index it with "
                                  "integers", items[0])
            code = f"{ctx.names[name]}__steps.gather({ex.tensor(at).code}, {rank})"
            return Value(code, at.loops, rank)
        else:
            raise Unsupported(f"'{name}' is computed step by step; read it at the loop "
                              "variable minus a constant", items[0])
        elem = Value(f"{ctx.names[name]}__steps[{index}]", plates, rank)
        return ex.index_value(elem, items[p + 1:], scope, node, tuple(v.shape[p + 1:]))  # type: ignore[index]
    return read
