"""The specs the runtime loads data and initialises unknowns by: `data_specs` (one
DataSpec per data declaration, dataspecs.py) and `latent_specs` (each continuous latent,
point parameter and net's weight vector with its shape and kind of support). Separate
because they describe the unknowns and data to the runtime without computing anything
with them."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.dataspecs import data_spec_lines
from compiler.codegen.enumeration import is_discrete_latent
from compiler.codegen.flows import flow_of_base
from compiler.codegen.nets import mlp_sizes_code, net_signature
from compiler.passes.nets import FLOW_FUNCTIONS
from compiler.passes.supports import Support


def write_data_specs(ctx: ModuleContext) -> None:
    o = ctx.out
    o.blank()
    with o.indent("data_specs = ("):
        for line in data_spec_lines(ctx.model, ctx.ints, ctx.where):
            o.line(line + ",")
    o.line(")")


def write_latent_specs(ctx: ModuleContext) -> None:
    o = ctx.out
    o.blank()
    with o.indent("def latent_specs(self, data__):"):
        o.line('"""Each latent variable: name, constrained shape, kind of support."""')
        ctx.unpack_sizes()
        with o.indent("return ("):
            for v in ctx.model.of_role("latent"):
                if not is_discrete_latent(ctx.model, v.name) and \
                        flow_of_base(ctx.model, v.name) is None:
                    _write_latent_spec(ctx, v)
            params = ctx.model.of_role("param")
            if params:
                o.comment("point parameters ('param'): unknowns the optimisers fit, "
                          "no prior")
            for v in params:
                _write_latent_spec(ctx, v)
            nets = ctx.model.of_role("net")
            if nets:
                o.comment("nets: their weights, one flat vector each (point parameters)")
            for v in nets:
                sig = net_signature(ctx, v)
                if sig.sequence:
                    o.line(f"rt.seqnet_latent({v.name!r}, "
                           f"{ctx.exprs().seqnet_spec(sig)}),")
                    continue
                if sig.invertible:
                    shape, fn = ctx.exprs().flow_shape(sig), FLOW_FUNCTIONS[sig.kind]
                    o.line(f"rt.Latent({v.name!r}, (rt.{fn}_size(*{shape}),), 'net', "
                           f"init_scale=rt.{fn}_init_scale(*{shape})),")
                    continue
                sizes = mlp_sizes_code(ctx, v)
                o.line(f"rt.Latent({v.name!r}, (rt.mlp_size({sizes}),), 'net', "
                       f"init_scale=rt.mlp_init_scale({sizes})),")
        o.line(")")


def _write_latent_spec(ctx: ModuleContext, v: Any) -> None:
    s = ctx.model.supports[v.name]
    shape = ctx.shape_code(v.shape)
    ctx.out.line(f"rt.Latent({v.name!r}, {shape}, {_support_kind(s)!r}),")


def _support_kind(s: Support) -> str:
    return s.kind if s.kind != "interval" else "bounded"
