"""The generated Python module: a class deriving from runtime.CompiledModel with the
model's data declarations, latent variables, transformed data, log joint density and
ancestral samplers, each block commented with the .bgm line it comes from.

This file only lays the module out. Each part is written by plain functions of one
shared ModuleContext (context.py), in a module of its own:

    header.py            the module docstring and imports
    class_attributes.py  names by role, plates, locations
    specs.py             data_specs, latent_specs
    nets.py              windows, call_net
    data_checks.py       check_sizes, check_data
    transformed_data.py  transformed_data
    log_density.py       log_density
    samplers.py          sample_prior, sample_predictive, sample_guide

and the functions' bodies by statements.py, with storage.py (where values go),
distribution_calls.py, constraints.py, enumeration.py (discrete latents summed out)
and flows.py.
"""
from __future__ import annotations

from dataclasses import replace

from compiler.codegen.class_attributes import write_class_attributes
from compiler.codegen.context import ModuleContext
from compiler.codegen.data_checks import write_check_data, write_check_sizes
from compiler.codegen.exprs import Unsupported
from compiler.codegen.header import VERSION, write_module_header
from compiler.codegen.log_density import write_log_density
from compiler.codegen.nets import write_call_net, write_windows
from compiler.codegen.samplers import write_sampler
from compiler.codegen.specs import write_data_specs, write_latent_specs
from compiler.codegen.transformed_data import write_transformed_data
from compiler.ir import GraphicalModel
from compiler.tables.names import class_name
from dsl.diagnostics import BgmError, Diagnostic
from dsl.printer import format_type


def generate(model: GraphicalModel) -> str:
    """Python source for `model`; byte-identical for identical input."""
    try:
        return _module_source(model)
    except Unsupported as exc:
        raise BgmError([exc.diagnostic], model.source) from None


def _module_source(model: GraphicalModel) -> str:
    ctx = ModuleContext(model)
    o = ctx.out
    write_module_header(ctx)
    o.blank()
    o.line("")
    _write_model_class(ctx)
    guide = model.guide
    if guide is not None:
        o.blank()
        o.line("")
        o.lines(_guide_class_lines(ModuleContext(guide, guide_of=model)))
        o.blank()
        o.line("")
        o.line(f"{class_name(model.name)}.guide = {class_name(guide.name)}")
    return o.text()


def _write_model_class(ctx: ModuleContext) -> None:
    with ctx.out.indent(f"class {class_name(ctx.model.name)}(rt.CompiledModel):"):
        write_class_attributes(ctx)
        write_data_specs(ctx)
        write_latent_specs(ctx)
        write_windows(ctx)
        write_call_net(ctx)
        write_check_sizes(ctx)
        write_transformed_data(ctx)
        write_check_data(ctx)
        write_log_density(ctx)
        write_sampler(ctx, prior=True)
        write_sampler(ctx, prior=False)


def _guide_class_lines(ctx: ModuleContext) -> list[str]:
    """The guide (rule 21) as a class of its own: its log density is log q, and
    `sample_guide` draws the latents it covers by reparameterised draws, adding log q
    of each draw to the accumulator."""
    with ctx.out.indent(f"class {class_name(ctx.model.name)}(rt.CompiledModel):"):
        write_class_attributes(ctx)
        write_data_specs(ctx)
        write_latent_specs(ctx)
        write_transformed_data(ctx)
        write_log_density(ctx)
        write_sampler(ctx, prior=True, guide=True)
    return ctx.out.text().splitlines()


__all__ = ["generate", "VERSION", "format_type", "replace", "Diagnostic"]
