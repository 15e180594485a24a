"""The class attributes of a generated model: its docstring, name and source, the names of
its variables by role (latent, observed, params and nets, discrete, implicit, diffusion,
causal, chains), the latents no likelihood identifies, the plates a fit may subsample and
the .bgm line of every variable. Separate because they are plain data the runtime reads
before calling any method."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.emitter import str_tuple_code
from compiler.codegen.enumeration import enumeration_group_of, is_discrete_latent
from compiler.codegen.flows import flow_data_scored, flow_of_base
from compiler.codegen.nets import causal_net_calls
from compiler.indexing import classify
from compiler.passes.ragged import ragged_sizes
from compiler.sizes import Size
from compiler.tables.names import doc_text
from compiler.walk import free_names


def _chain_axes(ctx: ModuleContext, chains: list[str]) -> dict[str, int]:
    """Each observed chain whose step index is not its first (`y[n, t]`, a series per
    element of the plate n): the position of that index."""
    m = ctx.model
    out: dict[str, int] = {}
    for s in m.statements:
        if s.target not in chains or s.kind != "sample" or not s.loops:
            continue
        scopes = tuple(m.scopes[lp.id] for lp in s.loops)
        for k, item in enumerate(s.node.target.items):
            f = classify(item, scopes, ctx.ints)
            if f.kind == "loop" and f.loop is not None and f.loop.key == s.loops[-1].id:
                if k:
                    out[s.target] = k  # type: ignore[index]
                break
    return out


def write_class_attributes(ctx: ModuleContext) -> None:
    m, o = ctx.model, ctx.out
    if ctx.guide_of is not None:
        o.line(f'"""The guide of {ctx.guide_of.name} from {doc_text(ctx.file)}: the '
               'variational family q(latents | data)."""')
    else:
        o.line(f'"""The model {m.name} from {doc_text(ctx.file)}."""')
    o.blank()
    o.line(f"name = {m.name!r}")
    o.line(f"source = {ctx.file!r}")
    for attr, role in (("latent_names", "latent"), ("observed_names", "observed"),
                       ("deterministic_names", "deterministic"),
                       ("transformed_data_names", "transformed_data"),
                       ("param_names", "param")):
        roles = (role, "net") if role == "param" else (role,)  # a net's weights are params
        names = [v.name for v in m.of_role(*roles) if not is_discrete_latent(m, v.name) and
                 flow_of_base(m, v.name) is None]
        o.line(f"{attr} = {str_tuple_code(names)}")
    nets = [v.name for v in m.of_role("net")]
    if nets:
        o.line(f"net_names = {str_tuple_code(nets)}")
    discrete = [v.name for v in m.of_role("latent") if is_discrete_latent(m, v.name)]
    if discrete:
        o.line(f"discrete_names = {str_tuple_code(discrete)}")
    flows = m.flows.values()
    in_flows = {f.base for f in flows} | {f.net for f in flows}
    unidentified = sorted(v.name for v in m.of_role("latent", "param", "net")
                          if v.name not in m.likelihood_latents and
                          v.name not in in_flows)
    o.line(f"latents_without_likelihood = {str_tuple_code(unidentified)}")
    centred = _centred(m)
    if centred:
        pairs = ", ".join(f"({a!r}, {b!r})" for a, b in centred)
        o.line(f"centred = ({pairs},)  # (latent, scale): a divergence hint may suggest "
               "non-centring")
    o.line(f"has_factor_statements = {any(s.kind == 'factor' for s in m.statements)}")
    ragged = ragged_sizes(m)
    if ragged:
        o.line("# loops ending at x[n] (ragged): their dims run to the largest x, computed "
               "at loading")
        entries = ", ".join(f"{k!r}: ({vec!r}, {lo})" for k, (vec, lo) in sorted(ragged.items()))
        o.line(f"ragged_sizes = {{{entries}}}")
    implicit = [f.data for f in m.flows.values() if f.implicit]
    if implicit:
        o.line(f"implicit_names = {str_tuple_code(implicit)}  # no likelihood: --method "
               "adversarial")
    diffusions = sorted({m.statements[i].target for i in m.diffusions})
    if diffusions:
        o.line(f"diffusion_names = {str_tuple_code(diffusions)}  # trained by the "
               "noise-prediction loss: --method svi")
    causal = [s.target for s in m.statements if s.kind == "sample" and s.loops and
              causal_net_calls(ctx, s)]
    if causal:
        o.line(f"causal_names = {str_tuple_code(causal)}  # prefix-conditioned factors")
    chains = [s.target for s in m.statements if s.kind == "sample" and s.loops and
              m.variables[s.target].role == "observed" and s.target not in causal and
              m.loop_kinds[s.loops[-1].id] == "chain"]
    if chains:
        o.line(f"chain_names = {str_tuple_code(chains)}  # observed chains: forecasts "
               "continue them")
    axes = _chain_axes(ctx, chains + causal)
    if axes:
        entries = ", ".join(f"{k!r}: {v}" for k, v in axes.items())
        o.line(f"chain_axes = {{{entries}}}  # their step dim, after the plates of many "
               "series or documents")
    plates = _plates(ctx)
    if plates:
        with o.indent("plates = {"):
            for size, terms in plates.items():
                o.line(f"{size!r}: {str_tuple_code(terms)},")
        o.line("}")
    with o.indent("locations = {"):
        for v in m.variables.values():
            o.line(f"{v.name!r}: {ctx.where(v.span)!r},")
    o.line("}")


def _plates(ctx: ModuleContext) -> dict[str, list[str]]:
    """The sizes N a fit may subsample (`--batch`): every loop over 1..N is a plate
    and holds no `factor`. Each lists the terms (named by their target) that vary
    over it, which a minibatch scales by N / batch to keep the ELBO unbiased."""
    m = ctx.model
    data_ints = {v.name for v in m.of_role("data")}
    sizes: dict[str, list[str]] = {}
    blocked: set[str] = set()
    for stmt in m.statements:
        over = set()
        group = enumeration_group_of(m, stmt)
        group_sizes = set() if group is None or group.chain else \
            {_size_name(p.hi, data_ints) for p in group.plate}
        for lp in stmt.loops:
            sc = m.scopes[lp.id]
            name = _size_name(sc.hi, data_ints)
            if name is None:
                continue
            over.add(name)
            if m.loop_kinds[lp.id] != "plate" or stmt.kind == "factor" or \
                    sc.lo != Size.const(1) or group is not None and name not in group_sizes:
                blocked.add(name)  # a chain, a partial range, or inside a logsumexp
        shape = m.variables[stmt.target].shape if stmt.target else None
        if not stmt.loops and shape:  # vectorised over its first dim
            name = _size_name(shape[0], data_ints)
            if name is not None:
                over.add(name)
        if stmt.kind != "sample":
            continue
        term = flow_data_scored(m, stmt) or stmt.target
        for name in over:
            terms = sizes.setdefault(name, [])
            if term not in terms:
                terms.append(term)
    return {k: v for k, v in sizes.items() if k not in blocked}


def _size_name(size: Any, data_ints: set[str]) -> str | None:
    """The int data N when `size` is exactly N."""
    if isinstance(size, Size) and len(size.terms) == 1:
        (monomial, coefficient), = size.terms
        if coefficient == 1 and len(monomial) == 1 and monomial[0] in data_ints:
            return monomial[0]
    return None


# Location-scale families whose `sigma`-like parameter scales a draw: `theta ~ Normal(mu,
# tau)` with tau a latent is the centred form that divergences come from.
_LOCATION_SCALE = {"Normal": "sigma", "StudentT": "sigma", "Cauchy": "sigma",
                   "Laplace": "b", "LogNormal": "sigma", "Gumbel": "beta"}


def _centred(m: Any) -> list[tuple[str, str]]:
    """(latent, scale latent) for each continuous latent drawn from a location-scale family
    whose scale reads another latent: where non-centring (theta = mu + tau * z) helps."""
    found: list[tuple[str, str]] = []
    latents = {v.name for v in m.of_role("latent") if not v.discrete}
    for stmt in m.statements:
        if stmt.kind != "sample" or stmt.target not in latents:
            continue
        binding = m.bindings.get(stmt.id)
        scale = _LOCATION_SCALE.get(binding.name) if binding is not None else None
        for param, arg in zip(binding.params, binding.args, strict=True) if scale else ():
            if param.name == scale:
                names = sorted({x.id for x in free_names(arg)} & latents - {stmt.target})
                found += [(stmt.target, name) for name in names
                          if (stmt.target, name) not in found]
    return found

