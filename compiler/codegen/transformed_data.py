"""The `transformed_data` method: variables computed once from the data when it is loaded,
stored back into the data. What reads observed data is guarded by its presence, since
the samplers simulate observed data that is absent. Separate because it runs at loading,
once, and the log density and samplers skip its units (`is_transformed_data_unit`)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from compiler.codegen.context import ModuleContext
from compiler.codegen.plan import Unit, plan
from compiler.codegen.statements import write_unit
from compiler.codegen.storage import begin_function
from compiler.ir import GraphicalModel


def is_transformed_data_unit(model: GraphicalModel, u: Unit) -> bool:
    """A unit computing transformed data (once, at loading: never in the functions)."""
    body = [u.statement] if u.statement is not None else u.body
    return bool(body) and all(
        s.kind == "assign" and model.variables[s.target].role == "transformed_data"  # type: ignore[index]
        for s in body)


def write_transformed_data(ctx: ModuleContext) -> None:
    o = ctx.out
    stmts = [s for s in ctx.model.statements if s.kind == "assign" and
             ctx.model.variables[s.target].role == "transformed_data"]  # type: ignore[index]
    if not stmts:
        return
    o.blank()
    with o.indent("def transformed_data(self, data__):"):
        o.line('"""Computed once from the data when it is loaded; what reads observed '
               'data is skipped\n        while that data is absent (when simulating it)."""')
        for v in ctx.model.of_role("data", "observed"):
            get = f".get({v.name!r})" if v.role == "observed" else f"[{v.name!r}]"
            o.line(f"{ctx.names[v.name]} = data__{get}")
        units = [u for u in plan(ctx.model, sampling=True, constrain=False)
                 if is_transformed_data_unit(ctx.model, u)]
        begin_function(ctx, units)
        needs: dict[str, set[str]] = {}  # observed data each transformed variable reads
        stored: set[str] = set()
        for u in units:
            body = [u.statement] if u.statement else u.body
            reads = {r for st in body for r in st.reads}  # type: ignore[union-attr]
            observed = {r for r in reads if ctx.model.variables[r].role == "observed"}
            observed |= {x for r in reads for x in needs.get(r, ())}
            for st in body:
                needs[st.target] = needs.get(st.target, set()) | observed  # type: ignore[union-attr]
            guard = " and ".join(f"{ctx.names[x]} is not None" for x in sorted(observed))
            with o.indent(f"if {guard}:") if guard else _no_indent():
                write_unit(ctx, u, "logp")
                for name in sorted({st.target for st in body} - stored):  # type: ignore[union-attr]
                    if ctx.storage.statements_left.get(name, 0) <= 0 or \
                            name in ctx.storage.completed:
                        o.line(f"data__[{name!r}] = {ctx.names[name]}")
                        stored.add(name)


@contextmanager
def _no_indent() -> Iterator[None]:
    yield
