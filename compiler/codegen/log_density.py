"""The `log_density` method: data as locals, then the plan's units with constraining (each
latent from u__, its Jacobian included), every statement's term added to the accumulator
and the discrete latents summed out at the end; an implicit model raises instead, having
no density. Separate as the one function every fit method evaluates."""
from __future__ import annotations

from compiler.codegen.context import ModuleContext
from compiler.codegen.enumeration import write_sum_out
from compiler.codegen.flows import implicit_model_message
from compiler.codegen.plan import plan
from compiler.codegen.statements import write_unit
from compiler.codegen.storage import begin_function
from compiler.codegen.transformed_data import is_transformed_data_unit


def write_log_density(ctx: ModuleContext) -> None:
    o = ctx.out
    o.blank()
    implicit = [f for f in ctx.model.flows.values() if f.implicit]
    with o.indent("def log_density(self, data__, u__, acc__):"):
        o.line('"""The log joint density at unconstrained values u__ (batched), '
               'accumulated in acc__."""')
        if implicit:
            f = implicit[0]
            where = ctx.where(ctx.model.statements[f.assign].span)
            o.line(f"raise rt.ModelError({implicit_model_message(f)!r}, {where!r})")
            return
        ctx.unpack_data()
        units = [u for u in plan(ctx.model, sampling=False, constrain=True)
                 if not is_transformed_data_unit(ctx.model, u)]
        begin_function(ctx, units)
        for u in units:
            write_unit(ctx, u, "logp")
        write_sum_out(ctx)
