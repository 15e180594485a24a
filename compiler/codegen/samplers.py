"""The sampling methods: `sample_prior` (ancestral draws of every variable),
`sample_predictive` (observed variables given latent draws) and the guide's
`sample_guide` (reparameterised draws adding log q). Separate because sampling runs the
plan without constraining or enumerating: every variable, discrete latents included, is
drawn and recorded in `draws__`, and a model the planner cannot sample gets a method that
says why."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.enumeration import is_discrete_latent
from compiler.codegen.flows import flow_data_scored, flow_of_base
from compiler.codegen.plan import Unit, plan
from compiler.codegen.statements import write_unit
from compiler.codegen.storage import begin_function
from compiler.codegen.transformed_data import is_transformed_data_unit
from dsl.diagnostics import BgmError


def write_sampler(ctx: ModuleContext, prior: bool, guide: bool = False) -> None:
    o = ctx.out
    o.blank()
    ctx.sampling = True
    ctx.drawing_guide = guide
    params = ctx.model.of_role("param", "net")
    if guide:
        header = "def sample_guide(self, data__, given__, shape__, acc__):"
        doc = '"""Draws of the latents from the guide at given__ (shape__); log q into acc__."""'
    elif prior and params:
        header = "def sample_prior(self, data__, shape__, given__=None):"
        doc = '"""Ancestral draws from the prior (batch shape__) at the fitted given__."""'
    elif prior:
        header = "def sample_prior(self, data__, shape__):"
        doc = '"""Ancestral draws of every variable from the prior (batch shape__)."""'
    else:
        header = "def sample_predictive(self, data__, given__, shape__):"
        doc = '"""The posterior predictive: observed variables given latent draws given__."""'
    try:
        units = [u for u in plan(ctx.model, sampling=True, constrain=False,
                                 predictive=not prior)
                 if not is_transformed_data_unit(ctx.model, u) and
                 (prior or not _draws_a_given_latent(ctx, u))]
    except BgmError as exc:  # e.g. a recursion spread over loops with different ranges
        if guide:
            raise
        reason = exc.diagnostics[0].message
        with o.indent(header):
            o.line(doc)
            message = "ancestral sampling of this model is not supported yet: " + reason
            o.line(f"raise rt.ModelError({message!r})")
        ctx.sampling = False
        return
    with o.indent(header):
        o.line(doc)
        if prior and params and not guide:  # no prior to draw them from: needs a fit
            with o.indent("if given__ is None:"):
                o.line(f"raise rt.ModelError({_no_prior_draws_message(params)!r}, "
                       f"{ctx.where(params[0].span)!r})")
        ctx.unpack_data()
        o.line("draws__ = {}")
        given = params if prior else ctx.model.of_role("latent", "param", "net")
        for v in given:  # a flow's base is drawn afresh: it is not fitted
            if not is_discrete_latent(ctx.model, v.name) and \
                    flow_of_base(ctx.model, v.name) is None:
                o.line(f"{ctx.names[v.name]} = given__[{v.name!r}]")
        begin_function(ctx, units)
        for u in units:
            if u.statement is not None and u.statement.kind == "factor":
                continue
            write_unit(ctx, u, "sample")
        o.line("return draws__")
    ctx.sampling = False
    ctx.drawing_guide = False


def _draws_a_given_latent(ctx: ModuleContext, u: Unit) -> bool:
    """A unit drawing a latent that `sample_predictive` is given instead (not a discrete
    one nor a flow's base: those it draws afresh)."""
    s = u.statement
    if s is not None:
        return (s.kind == "sample" and ctx.model.variables[s.target].role == "latent"
                and not is_discrete_latent(ctx.model, s.target)  # type: ignore[arg-type]
                and flow_data_scored(ctx.model, s) is None)
    return False


def _no_prior_draws_message(params: list[Any]) -> str:
    """Nets and `param`s have no prior to draw from; say which, in their own words."""
    nets = [v.name for v in params if v.role == "net"]
    points = [v.name for v in params if v.role != "net"]
    parts = []
    if nets:
        parts.append(f"{', '.join(nets)} {'is a net' if len(nets) == 1 else 'are nets'} "
                     "(weights without a prior)")
    if points:
        parts.append(f"{', '.join(points)} "
                     f"{'is a point parameter' if len(points) == 1 else 'are point parameters'}"
                     " ('param', no prior)")
    fix = "" if not points else "; or give each 'param' a prior ('~')"
    return (f"cannot draw from the prior: {' and '.join(parts)}; fit first and draw the "
            "predictive at the fitted values ('bgmc sample --fit FIT.json', FIT.json from "
            f"'bgmc fit'){fix}")
