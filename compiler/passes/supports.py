"""Supports: where each latent lives, so it can be mapped to unconstrained space.

Contract: `infer_supports(model)` sets `model.supports[name]` for every latent (the
declared type when given, else its prior's support, rule 7) and every point parameter
(`param`: its declared type), `model.bound_reads[name]` (variables its bounds read) and
`model.likelihood_latents` (latents and params some likelihood or `factor` term reads,
for rule 23's MLE check). Errors: a declared type wider than the prior's support, an
integer distribution on real data, a discrete latent (summed out in a later version) or
an integer param, definitions of one latent with different supports.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from compiler import consts
from compiler.ir import GraphicalModel, Statement, Variable
from compiler.passes.ranges import IndexRule, record
from compiler.sizes import NotASize, Size, int_env, size_of
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.walk import free_names
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Problem
from dsl.printer import format_expr, format_type


@dataclass(frozen=True)
class Support:
    kind: str  # real | interval | simplex | ordered | cholesky_corr | int
    lower: Any = None  # None, a float, or an expression in `statement`'s loop context
    upper: Any = None
    statement: int | None = None

    def describe(self) -> str:
        if self.kind == "interval":
            lo = "-inf" if self.lower is None else _text(self.lower)
            hi = "inf" if self.upper is None else _text(self.upper)
            return f"({lo}, {hi})"
        return self.kind


def _text(bound: Any) -> str:
    return format_expr(bound) if not isinstance(bound, (int, float)) else repr(bound)


def _number(bound: Any, model: GraphicalModel) -> float | None:
    if bound is None or isinstance(bound, (int, float)):
        return bound
    try:
        return float(consts.fold(bound, {k: v.value for k, v in model.variables.items()
                                         if v.role == "const"}))
    except (consts.NotConstant, ArithmeticError, ValueError):
        return None


def type_support(t: n.Type, statement: int | None) -> Support:
    if t.base == "positive":
        return Support("interval", 0.0, None)
    if t.base == "unit":
        return Support("interval", 0.0, 1.0)
    if t.base in ("simplex", "ordered", "cholesky_corr"):
        return Support(t.base)
    if t.base == "int":
        return Support("int", t.lower, t.upper, statement)
    if t.lower is None and t.upper is None:
        return Support("real")
    return Support("interval", t.lower, t.upper, statement)


def prior_support(stmt: Statement, model: GraphicalModel) -> Support:
    binding = model.bindings[stmt.id]
    spec = DISTRIBUTIONS[binding.name]
    args = {p.name: a for p, a in zip(binding.params, binding.args, strict=True)}
    kind, *bounds = spec.support
    if kind in ("interval", "int"):
        lo, hi = (args.get(b, b) if isinstance(b, str) and not b.startswith("len:") else
                  (None if isinstance(b, str) else b) for b in bounds)
        return Support(str(kind), lo, hi, stmt.id)
    return Support(str(kind))


def infer_supports(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    model.supports = {}
    model.bound_reads = {}
    for v in model.of_role("latent", "param"):
        try:
            model.supports[v.name] = (
                _latent_support(v, model) if v.role == "latent" else _param_support(v))
        except Problem as exc:
            errors.append(exc.diagnostic)
            continue
        s = model.supports[v.name]
        model.bound_reads[v.name] = {x.id for b in (s.lower, s.upper)
                                     if b is not None and not isinstance(b, (int, float))
                                     for x in free_names(b) if x.id in model.variables}
    for stmt in model.statements:
        if stmt.kind == "sample" and stmt.target and \
                model.variables[stmt.target].role in ("observed", "transformed_data"):
            problem = _data_problem(stmt, model)
            if problem:
                errors.append(problem)
    model.likelihood_latents = _likelihood_latents(model)
    errors += _improper_and_unobserved(model)
    errors += _real_latents_as_positive_arguments(model)
    if errors:
        raise BgmError(errors, model.source)



def _latent_support(v: Variable, model: GraphicalModel) -> Support:
    statements = model.defining(v.name)
    first = statements[0]
    spec = DISTRIBUTIONS[model.bindings[first.id].name]
    if spec.discrete:
        return _discrete_support(v, model)
    priors = [prior_support(s, model) for s in statements]
    typed = [s for s in statements if s.node.type is not None]
    declared = type_support(typed[0].node.type, typed[0].id) if typed else None
    for s, prior in zip(statements, priors, strict=True):
        if declared is not None:
            _check_inside(v, declared, typed[0].node.type, prior, s, model)
    chosen = declared or priors[0]
    if declared is None and any(p.describe() != chosen.describe() for p in priors[1:]):
        raise Problem(f"the definitions of '{v.name}' give it different supports "
                       f"({', '.join(_support_text(p) for p in priors)})",
                       statements[-1].node.dist.span, "declare its type on the first "
                                                      "definition")
    if (chosen.lower is not None or chosen.upper is not None) and len(statements) > 1 and \
            any(_number(b, model) is None for b in (chosen.lower, chosen.upper)
                if b is not None):
        raise Problem(f"'{v.name}' has bounds that depend on other variables and is "
                       "defined by several statements; this is not supported yet",
                       first.span)
    return chosen


def _discrete_support(v: Variable, model: GraphicalModel) -> Support:
    """A discrete latent is summed out by enumerating its values (rule 19), so its support
    must be finite and known when the data is loaded: the prior's, narrowed by a declared
    `int<lower=, upper=>` (a truncation, rule 7). An upper bound "len:p" is the length of
    the argument p (Categorical's K)."""
    statements = model.defining(v.name)
    first = statements[0]
    binding = model.bindings[first.id]
    spec = DISTRIBUTIONS[binding.name]
    args = {p.name: a for p, a in zip(binding.params, binding.args, strict=True)}
    _, lo, hi = spec.support
    lower = args.get(lo, lo) if isinstance(lo, str) else lo
    upper = args.get(hi, hi) if isinstance(hi, str) and not hi.startswith("len:") else hi
    t = first.node.type
    if t is not None:
        if t.base != "int":
            raise Problem(f"'{v.name}' is declared {format_type(t)}, but its prior "
                           f"{spec.name} draws integers", t.span,
                           "declare it int (with bounds if needed) or leave the type out")
        _check_int_inside(v, t, first, spec.name, lower,
                          _length(args, hi, model) if isinstance(hi, str) and
                          hi.startswith("len:") else upper, model)
        lower = t.lower if t.lower is not None else lower
        upper = t.upper if t.upper is not None else upper
    if upper is None or lower is None:
        raise Problem(f"'{v.name}' is a discrete latent with unbounded support "
                       f"({spec.name}); bgm sums discrete latents out by enumerating their "
                       "values, which needs a finite support", first.node.target.name.span,
                       f"declare a bound, e.g. '{v.name}: int<lower=0, upper=100> ~ "
                       f"{format_expr(first.node.dist)}' (a truncation, rule 7), or make "
                       f"'{v.name}' data")
    for bound in (lower, upper):
        if isinstance(bound, (int, float, str)):
            continue
        latent = sorted(x.id for x in free_names(bound) if x.id in model.variables and
                        model.variables[x.id].role not in ("data", "const",
                                                           "transformed_data"))
        if latent:
            text = format_expr(bound)
            reads = f"is the latent '{text}'" if text == latent[0] else \
                f"'{text}' reads the latent '{latent[0]}'"
            raise Problem(f"the values of the discrete latent '{v.name}' must be known "
                           f"when the data is loaded, but its bound {reads}",
                           getattr(bound, "span", None) or first.node.dist.span,
                           "bound it by data or constants (rule 19)")
    return Support("int", lower, upper, first.id)


def _length(args: dict[str, Any], hi: str, model: GraphicalModel) -> Any:
    """The size K of a "len:p" bound (Categorical's last dimension), a Size or None."""
    arg = args.get(hi[4:], next(iter(args.values()), None))
    t = model.types.get(id(arg)) if arg is not None else None
    shape = getattr(t, "shape", None)
    return shape[-1] if shape else None


def _as_size(bound: Any, ints: dict[str, Any]) -> Size | None:
    if bound is None or isinstance(bound, Size):
        return bound
    if isinstance(bound, (int, float)):
        return Size.const(int(bound)) if float(bound).is_integer() else None
    try:
        return size_of(bound, ints)
    except NotASize:
        return None


def _check_int_inside(v: Variable, t: n.Type, stmt: Statement, spec_name: str,
                      lower: Any, upper: Any, model: GraphicalModel) -> None:
    """Rule 7 for integers: a declared int<lower=, upper=> lies inside the prior's support
    (Categorical's 1..K): decided here when the bounds differ by a constant, else checked
    when the data is loaded."""
    ints = int_env(model)
    scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)
    guards = tuple((sc.lo, sc.hi) for sc in scopes)
    ends = ["inf" if b is None else str(b) if isinstance(b, Size) else _text(b)
            for b in (lower, upper)]
    prior = f"{{{ends[0]}, ..., {ends[1]}}}".replace("{inf", "{-inf")
    for mine, theirs, is_lower in ((t.lower, lower, True), (t.upper, upper, False)):
        a, b = _as_size(mine, ints), _as_size(theirs, ints)
        if a is None or b is None:
            continue
        gap = (b - a) if is_lower else (a - b)  # > 0: the declared type reaches outside
        side = "lower" if is_lower else "upper"
        if gap.constant is not None:
            if gap.constant > 0:
                raise Problem(f"'{v.name}' is declared {format_type(t)}, which is wider than "
                               f"the support {prior} of its prior {spec_name}", t.span,
                               "a declared type must lie inside its prior's support "
                               "(rule 7)")
            continue
        low = _as_size(lower, ints)
        if not is_lower and low is not None and low.constant is not None and low.constant >= 1:
            text = f"the upper bound of '{v.name}': {format_type(t)} (inside the support " \
                f"{prior} of {spec_name})"
            record(model.range_rules, IndexRule(a, b, guards, t.span, text))
            continue
        text = f"how far the {side} bound of '{v.name}': {format_type(t)} stays inside the " \
            f"support {prior} of {spec_name}, plus 1,"
        record(model.range_rules, IndexRule(Size.const(1) - gap, None, guards, t.span, text))


def _param_support(v: Variable) -> Support:
    """A point parameter lives where its declared type says; it has no prior to narrow it."""
    t = v.declared_type
    assert t is not None  # the grammar requires `param NAME: TYPE`
    if t.base == "int":
        raise Problem(f"'{v.name}' is an integer point parameter; a 'param' must be "
                       "continuous (it is fitted by gradient-based optimisation)", t.span,
                       "declare it real (with bounds if needed), or make it data")
    return type_support(t, None)


def _check_inside(v: Variable, declared: Support, t: n.Type, prior: Support,
                  stmt: Statement, model: GraphicalModel) -> None:
    """Rule 7: the declared support (type `t`, written on one of the definitions) must
    lie inside the support of each definition's prior."""
    where = t.span if stmt.node.type is not None else stmt.node.dist.span
    spec_name = model.bindings[stmt.id].name
    if prior.kind == "real":
        return
    if prior.kind in ("simplex", "cholesky_corr"):
        if declared.kind != prior.kind:
            raise Problem(f"'{v.name}' is declared {format_type(t)}, but its prior "
                           f"{spec_name} draws a {prior.kind}", where,
                           f"declare it {format_type(n.Type(prior.kind, dims=t.dims[-1:]))} "
                           "or leave the type out")
        return
    wider = Problem(f"'{v.name}' is declared {format_type(t)}, which is wider than the support "
                     f"{_interval_text(prior)} of its prior {spec_name}", where,
                     "a declared type must lie inside its prior's support (rule 7): "
                     f"declare {format_type(_suggested(t, prior))} or leave the type out")
    if declared.kind != "interval":
        raise wider
    for mine, theirs, is_lower in ((declared.lower, prior.lower, True),
                                   (declared.upper, prior.upper, False)):
        if theirs is None:
            continue
        if mine is None:
            raise wider
        a, b = _number(mine, model), _number(theirs, model)
        if a is not None and b is not None and (a < b if is_lower else a > b):
            raise wider


def _bound_node(bound: Any) -> Any:
    """A support bound as an expression node (the table gives numbers as floats)."""
    if not isinstance(bound, (int, float)):
        return bound
    value = int(bound) if float(bound).is_integer() else bound
    return n.Number(value) if value >= 0 else n.Unary("-", n.Number(-value))


def _support_text(s: Support) -> str:
    return _interval_text(s) if s.kind == "interval" else s.kind


def _interval_text(s: Support) -> str:
    lo = "-inf" if s.lower is None else format_expr(_bound_node(s.lower))
    hi = "inf" if s.upper is None else format_expr(_bound_node(s.upper))
    return f"({lo}, {hi})"


def _suggested(t: n.Type, prior: Support) -> n.Type:
    """The declared type with the prior's bounds: what the user most likely meant."""
    lower = None if prior.lower is None else _bound_node(prior.lower)
    upper = None if prior.upper is None else _bound_node(prior.upper)
    return n.Type("real", lower, upper, t.dims)


def _data_problem(stmt: Statement, model: GraphicalModel) -> Diagnostic | None:
    binding = model.bindings[stmt.id]
    spec = DISTRIBUTIONS[binding.name]
    target = model.variables[stmt.target]  # type: ignore[index]
    if not spec.discrete:
        return None
    t = target.declared_type
    if target.discrete or (t is not None and t.base == "int"):
        return None  # int data, or transformed data computed as integers
    if spec.name == "Bernoulli" and t is not None and t.base in ("real", "unit"):
        s = type_support(t, None)
        if s.kind == "interval" and _number(s.lower, model) == 0.0 and \
                _number(s.upper, model) == 1.0:
            return None
        return Diagnostic(f"Bernoulli on real data needs '{target.name}' declared "
                          "real<lower=0, upper=1>", stmt.node.target.span,
                          f"declare it 'data {target.name}: int' for 0/1 labels, or "
                          "real<lower=0, upper=1> for probabilities (rule 7)")
    fix = f"declare it 'data {target.name}: {format_type(replace(t, base='int'))}'" \
        if t is not None else "compute it as an integer (floor, round, ...)"
    return Diagnostic(f"{spec.name} is a distribution over integers but '{target.name}' is "
                      "real data", stmt.node.target.span,
                      f"{fix}, or use a continuous distribution")


def _likelihood_latents(model: GraphicalModel) -> set[str]:
    found: set[str] = set()
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        v = model.variables[name]
        if v.role in ("latent", "param", "net"):
            found.add(name)
        if v.role == "deterministic" or (v.role == "latent" and v.discrete):
            # through `=` nodes and summed-out discrete latents to what they are made of
            for s in model.defining(name):
                for r in s.reads:
                    visit(r)
    for stmt in model.statements:
        likelihood = stmt.kind == "factor" or (
            stmt.kind == "sample" and stmt.target is not None and
            model.variables[stmt.target].role in ("observed", "transformed_data"))
        if likelihood:
            for r in stmt.reads:
                visit(r)
    return found


def _improper_and_unobserved(model: GraphicalModel) -> list[Diagnostic]:
    """A latent with an improper prior (Flat, HalfFlat, on an unbounded support) on which
    no likelihood or factor depends, directly or through other latents and `=` nodes: the
    joint density is flat along it, so its posterior is improper and every method would
    report a number that means nothing (a MAP 'converged' anywhere, NUTS drifting off)."""
    readers: dict[str, list[Statement]] = {}
    for stmt in model.statements:
        for name in stmt.reads:
            readers.setdefault(name, []).append(stmt)
    errors = []
    for v in model.of_role("latent"):
        prior = next((s for s in model.defining(v.name) if s.kind == "sample"), None)
        if prior is None or not _improper(model, prior):
            continue
        s = model.supports.get(v.name)
        if s is not None and s.kind == "interval" and s.lower is not None and \
                s.upper is not None:  # Flat() on a bounded interval is a proper uniform
            continue
        if not _reaches_data(model, v.name, readers):
            dist = model.bindings[prior.id].name
            errors.append(Diagnostic(
                f"'{v.name}' has an improper prior ({dist}) and no likelihood or factor "
                "depends on it: its posterior is improper (flat along it), so no method can "
                "fit it", prior.node.dist.span,
                f"give '{v.name}' a proper prior, or observe data that depend on it"))
    return errors


def _improper(model: GraphicalModel, stmt: Statement) -> bool:
    binding = model.bindings.get(stmt.id)
    spec = DISTRIBUTIONS.get(binding.name) if binding is not None else None
    return bool(spec is not None and spec.improper)


def _reaches_data(model: GraphicalModel, name: str,
                  readers: dict[str, list[Statement]]) -> bool:
    """Whether a likelihood of observed data or a factor depends on `name`."""
    frontier, seen = [name], {name}
    while frontier:
        current = frontier.pop()
        for stmt in readers.get(current, ()):
            if stmt.kind == "factor":
                return True
            target = model.variables[stmt.target] if stmt.target else None
            if target is None:
                continue
            if target.role in ("observed", "transformed_data"):
                return True
            if target.name not in seen:
                seen.add(target.name)
                frontier.append(target.name)
    return False


def _real_latents_as_positive_arguments(model: GraphicalModel) -> list[Diagnostic]:
    """`sigma ~ Normal(0, 1)` then `y ~ Normal(mu, sigma)`: a latent whose support is the
    whole real line passed as itself where a positive parameter (a scale, a rate) is due.
    Every negative value is then rejected by the sampler, which silently truncates the
    prior to its positive half: not what the program says."""
    errors = []
    reported: set[str] = set()
    for stmt in model.statements:
        binding = model.bindings.get(stmt.id) if stmt.kind == "sample" else None
        if binding is None:
            continue
        for param, arg in zip(binding.params, binding.args, strict=True):
            base = arg.base if isinstance(arg, n.Index) else arg
            if param.support != "positive" or not isinstance(base, n.Name):
                continue
            v = model.variables.get(base.id)
            if v is None or v.role != "latent" or v.discrete or v.name in reported:
                continue
            s = model.supports.get(v.name)
            if s is None or not (s.kind == "real" or s.kind == "interval" and
                                 s.lower is None):
                continue
            prior = next((d for d in model.defining(v.name) if d.kind == "sample"), None)
            what = f"its prior {model.bindings[prior.id].name}" if prior is not None and \
                prior.id in model.bindings else "it"
            reported.add(v.name)
            errors.append(Diagnostic(
                f"'{v.name}' is passed as {binding.name}'s {param.name}, which must be positive, "
                f"but {what} puts it anywhere on the real line: every negative value would "
                "be rejected, silently cutting its prior in half", arg.span,
                f"give it a positive prior ({v.name} ~ HalfNormal(...), Exponential(...)) or "
                f"declare it positive ({v.name}: real<lower=0> ~ ...)"))
    return errors

