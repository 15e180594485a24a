"""`bgmc explain`: what a model says, in the notation of a lecture.

- the joint density as a product of factors (a sympy expression, printed in Unicode or
  LaTeX): one density per `~`, a product over each loop, `exp(...)` per `factor`, and
  the `=` definitions beside it;
- the role of every variable (observed, latent, summed out, point estimate, data);
- the inference plan: how each unknown is handled and which methods fit the model;
- for a conjugate model, the closed-form posterior derived symbolically (Beta-Bernoulli,
  Gamma-Poisson, Normal-Normal with known scale, Dirichlet-Categorical), from the same
  plan `--method exact` computes numerically (compiler/passes/conjugacy.py).

sympy is imported here only: `bgmc check` and `compile` do not pay for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.pretty_symbology import pretty_use_unicode
from sympy.printing.pretty.stringpict import prettyForm

from compiler.ir import GraphicalModel, Loop, Statement
from compiler.passes.conjugacy import (
    Conjugate,
    DataRef,
    Known,
    NotConjugate,
    OnesOf,
    VectorOf,
    conjugate_plan,
)
from dsl import nodes as n
from dsl.printer import format_expr


class Density(sp.Function):
    """p(value | parameters) of a named distribution, printed `Name(value | params)`."""

    family = "Density"

    def _latex(self, printer: Any) -> str:
        value, *params = (printer._print(a) for a in self.args)
        rest = ", ".join(params)
        return rf"\mathrm{{{self.family}}}\left({value} \mid {rest}\right)" if params \
            else rf"\mathrm{{{self.family}}}\left({value}\right)"

    def _sympystr(self, printer: Any) -> str:
        value, *params = (printer._print(a) for a in self.args)
        return f"{self.family}({value} | {', '.join(params)})" if params else \
            f"{self.family}({value})"

    def _pretty(self, printer: Any) -> prettyForm:
        form = printer._print(self.args[0])
        for i, a in enumerate(self.args[1:]):
            form = prettyForm(*form.right(" | " if i == 0 else ", "))
            form = prettyForm(*form.right(printer._print(a)))
        form = prettyForm(*form.parens())
        return prettyForm(*form.left(self.family))


_FAMILIES: dict[str, type] = {}


def density(family: str, value: Any, *params: Any) -> sp.Expr:
    """The factor `family(value | params)`; one sympy class per family, so that two
    factors of the same family compare equal when their arguments do."""
    cls = _FAMILIES.get(family)
    if cls is None:
        cls = _FAMILIES[family] = type(f"{family}Density", (Density,), {"family": family})
    return cls(value, *params)


class Indicator(sp.Function):
    """[condition]: 1 when it holds, else 0 (Iverson's bracket)."""

    @classmethod
    def eval(cls, condition: Any) -> Any:  # noqa: ANN401 - sympy's protocol
        if condition is sp.true:
            return sp.Integer(1)
        if condition is sp.false:
            return sp.Integer(0)
        return None

    def _latex(self, printer: Any) -> str:
        return rf"\left[{printer._print(self.args[0])}\right]"

    def _sympystr(self, printer: Any) -> str:
        return f"[{printer._print(self.args[0])}]"

    def _pretty(self, printer: Any) -> prettyForm:
        return prettyForm(*printer._print(self.args[0]).parens("[", "]"))


_FUNCTIONS = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "sin": sp.sin, "cos": sp.cos,
              "tanh": sp.tanh, "abs": sp.Abs}
_COMPARE = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge, "==": sp.Eq, "!=": sp.Ne}


class _Symbols:
    """bgm expressions as sympy: names as symbols (vectors and matrices read whole do not
    commute, so X @ beta keeps its order), x[i] as an indexed symbol, calls of nets and
    unknown functions as undefined functions, anything else as a symbol spelling it."""

    def __init__(self, model: GraphicalModel):
        self.model = model

    def symbol(self, name: str) -> sp.Symbol:
        v = self.model.variables.get(name)
        array = v is not None and bool(v.shape)
        return sp.Symbol(name, commutative=not array)

    def expr(self, e: Any) -> sp.Expr:
        if isinstance(e, n.Number):
            return sp.Integer(e.value) if isinstance(e.value, int) else sp.Float(e.value, 6)
        if isinstance(e, n.Name):
            if e.id in self.model.variables:
                return self.symbol(e.id)
            return sp.Symbol(e.id, integer=True)  # a loop's variable: bound by its product
        if isinstance(e, n.Unary) and e.op == "-":
            return -self.expr(e.operand)
        if isinstance(e, n.Binary):
            a, b = self.expr(e.left), self.expr(e.right)
            ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                   "@": lambda: a * b, "/": lambda: a / b, "^": lambda: a ** b}
            if e.op in ops:
                return ops[e.op]()
        if isinstance(e, n.Compare) and e.op in _COMPARE:
            try:
                return Indicator(_COMPARE[e.op](self.expr(e.left), self.expr(e.right)))
            except TypeError:  # sympy compares scalars only: name the comparison instead
                return sp.Symbol(f"[{format_expr(e)}]")
        if isinstance(e, n.Index) and isinstance(e.base, n.Name) and \
                all(not isinstance(i, (n.Slice, n.FullSlice)) for i in e.items):
            return sp.IndexedBase(e.base.id)[tuple(self.expr(i) for i in e.items)]
        if isinstance(e, n.Call) and not e.kwargs:
            args = [self.expr(a) for a in e.args]
            f = _FUNCTIONS.get(e.func.id)
            if f is not None and len(args) == 1:
                # unevaluated: sympy's automatic rewriting of tanh(tanh(...)) is
                # exponential in the depth of the nesting
                return f(args[0], evaluate=False)
            return sp.Function(e.func.id)(*args)
        return sp.Symbol(format_expr(e))

    def target(self, stmt: Statement) -> sp.Expr:
        t = stmt.node.target
        return self.expr(n.Index(t.name, t.items, span=t.span) if t.items else t.name)


def _factor(model: GraphicalModel, sym: _Symbols, stmt: Statement) -> sp.Expr | None:
    if stmt.kind == "factor":
        return sp.exp(sym.expr(stmt.node.expr))
    if stmt.kind != "sample":
        return None
    binding = model.bindings[stmt.id]
    flow = next((f for f in model.flows.values()
                 if f.draw == stmt.id and not f.implicit), None)
    if flow is not None:  # the change of variables: p_u(f^-1(x)) |det d f^-1 / dx|
        x = sym.expr(n.Index(n.Name(flow.data, span=stmt.span), stmt.node.target.items,
                             span=stmt.span) if stmt.node.target.items else
                     n.Name(flow.data, span=stmt.span))
        inverse = sp.Function(f"{flow.net}⁻¹")(x)
        jacobian = sp.Abs(sp.Function(f"det J_{flow.net}⁻¹")(x))
        return sp.Mul(density(binding.name, inverse, *[sym.expr(a) for a in binding.args]),
                      jacobian, evaluate=False)
    if stmt.id in model.diffusions:
        call = model.diffusions[stmt.id]
        return density("Diffusion", sym.target(stmt), sp.Function(call.net)(sp.Symbol("t")))
    args = [sym.expr(a) for a in binding.args]
    if binding.form != 0:  # Bernoulli(logits=...): name the parameters of other forms
        args = [sp.Eq(sp.Symbol(p.name), a, evaluate=False)
                for p, a in zip(binding.params, args, strict=True)]
    return density(binding.name, sym.target(stmt), *args)


def joint(model: GraphicalModel) -> sp.Expr:
    """The joint density: the statements' factors, each loop a product over its range."""
    sym = _Symbols(model)
    return _product(model, sym, [s for s in model.statements], 0)


def _product(model: GraphicalModel, sym: _Symbols, stmts: list[Statement],
             depth: int) -> sp.Expr:
    """The factors of `stmts`, whose first `depth` loops are already open; statements
    in one loop (consecutive, same Loop) share its product."""
    out: list[sp.Expr] = []
    i = 0
    while i < len(stmts):
        s = stmts[i]
        if len(s.loops) <= depth:
            f = _factor(model, sym, s)
            if f is not None:
                out.append(f)
            i += 1
            continue
        loop: Loop = s.loops[depth]
        group = []
        while i < len(stmts) and len(stmts[i].loops) > depth and stmts[i].loops[depth] == loop:
            group.append(stmts[i])
            i += 1
        inner = _product(model, sym, group, depth + 1)
        if inner != 1:
            out.append(sp.Product(inner, (sp.Symbol(loop.var, integer=True),
                                          sym.expr(loop.range.lo), sym.expr(loop.range.hi))))
    return sp.Mul(*out, evaluate=False) if len(out) > 1 else (out[0] if out else sp.Integer(1))


def definitions(model: GraphicalModel) -> list[sp.Eq]:
    """The `=` statements: deterministic nodes and transformed data."""
    sym = _Symbols(model)
    return [sp.Eq(sym.target(s), sym.expr(s.node.value), evaluate=False)
            for s in model.statements if s.kind == "assign"]


# ---- roles and the plan ------------------------------------------------------------
def _unused_nets(model: GraphicalModel) -> set[str]:
    """Nets no statement reads: a GAN's critic, trained against the model, not in it."""
    read = set().union(*(s.reads for s in model.statements))
    return {v.name for v in model.of_role("net") if v.name not in read}


def _flow_roles(model: GraphicalModel) -> dict[str, str]:
    out = {}
    for f in model.flows.values():
        how = "a GAN's generator, no density" if f.implicit else "a flow"
        out[f.data] = f"observed, defined by '=' through the net {f.net} ({how})"
        out[f.base] = (f"the noise pushed through {f.net}: drawn afresh when sampling"
                       if f.implicit else
                       f"the flow's base: computed from {f.data} by {f.net}^-1") + \
            " (not an unknown)"
    for name in _unused_nets(model):
        out[name] = "net: a critic (no statement reads it; --critic trains it)"
    return out


def roles(model: GraphicalModel) -> list[str]:
    lines = []
    enumerated = model.enumerated
    special = _flow_roles(model)
    for v in model.variables.values():
        if v.role == "const":
            continue
        if v.name in special:
            lines.append(f"{v.name}: {special[v.name]}")
            continue
        what = {"observed": "observed (data generated by '~')",
                "data": "data (fixed, given)",
                "transformed_data": "transformed data (computed from data)",
                "deterministic": "deterministic (computed by '=' from unknowns)",
                "param": "point parameter (no prior: estimated, not integrated)",
                "net": "net: its weights are point parameters"}.get(v.role)
        if v.role == "latent":
            what = ("latent, discrete: summed out" + (" by the forward algorithm"
                                                      if enumerated[v.name].chain else
                                                      " by enumeration")
                    if v.name in enumerated else
                    f"latent, continuous on {model.supports[v.name].describe()}")
        lines.append(f"{v.name}: {what}")
    return lines


_TRANSFORMS = {"real": "none (the real line)", "simplex": "stick-breaking",
               "ordered": "cumulative exp of the increments",
               "cholesky_corr": "the Cholesky factor's unconstrained angles"}


def _transform(support: Any) -> str:
    if support.kind != "interval":
        return _TRANSFORMS.get(support.kind, support.kind)
    if support.lower is not None and support.upper is not None:
        return "scaled logit (log-Jacobian added)"
    return "log (log-Jacobian added)" if support.lower is not None else \
        "negated log (log-Jacobian added)"


def inference_plan(model: GraphicalModel) -> list[str]:
    lines = []
    enumerated = model.enumerated
    bases = {f.base for f in model.flows.values()}
    for v in model.of_role("latent"):
        if v.name in bases:
            continue
        if v.name in enumerated:
            e = enumerated[v.name]
            # a chain is one sequence, summed by the forward algorithm along it; an
            # independent discrete latent is summed out separately at each plate element
            how = "the forward algorithm along its chain" if e.chain else \
                "logsumexp over its values" + (", per element of its plate" if e.plate else "")
            lines.append(f"{v.name}: summed out of the likelihood exactly ({how}); its "
                         "posterior is recovered after the fit")
        else:
            lines.append(f"{v.name}: sampled or optimised on the unconstrained scale, "
                         f"transform {_transform(model.supports[v.name])}")
    critics = _unused_nets(model)
    for v in model.of_role("param", "net"):
        if v.name in critics:
            continue
        trained = "adversarially, against the critic" if _methods(model).startswith(
            "adversarial") else "mle, map or svi"
        lines.append(f"{v.name}: a point estimate ({trained})")
    lines.append("methods: " + _methods(model))
    return lines


def _methods(model: GraphicalModel) -> str:
    flows = model.flows
    if any(f.implicit for f in flows.values()):
        return "adversarial only (an implicit model has no likelihood)"
    if model.diffusions:
        return "svi only (the noise-prediction loss is a stochastic objective)"
    methods = ["map", "mle"]
    if model.of_role("param", "net"):
        methods += ["svi"]
    else:
        methods += ["nuts", "advi", "svi"]
    try:
        conjugate_plan(model)
        methods.append("exact (conjugate)")
    except NotConjugate:
        pass
    return ", ".join(methods)


# ---- conjugate posteriors ------------------------------------------------------------
@dataclass(frozen=True)
class Posterior:
    latent: str
    expr: sp.Expr  # density(family, latent, parameters...) with sums over the data


def conjugate_posteriors(model: GraphicalModel) -> list[Posterior]:
    """The closed-form posterior of each latent, derived symbolically; raises
    NotConjugate (with the reason) when the model has none."""
    return [_posterior(model, c) for c in conjugate_plan(model)]


def _value(spec: Known, index: tuple[sp.Symbol, ...] | None) -> sp.Expr:
    if isinstance(spec, DataRef):
        return sp.IndexedBase(spec.name)[index] if spec.at_loops and index else \
            sp.Symbol(spec.name)
    if isinstance(spec, VectorOf):
        return sp.Matrix([_value(i, None) for i in spec.items])
    if isinstance(spec, OnesOf):
        return sp.Symbol(f"ones({_value(spec.size, None)})")
    return sp.nsimplify(spec)


_INDICES = "ijlmnpqr"


class _Term:
    """One likelihood term's observations: y[i, j, ...] over the term's loops, summed by
    nested sums (a term with no loops sums over all of y's elements)."""

    def __init__(self, term: Any, rank: int):
        self.term = term
        self.index = tuple(sp.Symbol(_INDICES[k], integer=True)
                           for k in range(len(term.ranges)))
        y = sp.IndexedBase(term.observed)[self.index] if self.index else \
            sp.Symbol(term.observed)
        self.unit: sp.Expr = sp.Integer(1)  # observations per iteration
        self.y = y
        self.whole = y
        if self.index and rank > len(self.index):  # y[i] ~ Bernoulli(p), y: [N, M]
            self.y, self.unit = sp.Function("sum")(y), sp.Function("size")(y)

    def other(self, name: str) -> sp.Expr:
        return _value(self.term.others[name], self.index)

    def total(self, body: sp.Expr) -> sp.Expr:
        if not self.index:  # vectorised: sum over every element of the observed data
            return sp.Function("sum")(body) if body.has(self.y) else \
                body * sp.Function("size")(self.y)
        for symbol, (lo, hi) in reversed(list(zip(self.index, self.term.ranges, strict=True))):
            body = sp.Sum(body, (symbol, _size(lo), _size(hi)))
        return body


def _size(terms: Any) -> sp.Expr:
    return sp.Add(*[c * sp.Mul(*[sp.Symbol(x) for x in names]) for names, c in terms]) \
        if terms else sp.Integer(0)


def _posterior(model: GraphicalModel, c: Conjugate) -> Posterior:
    theta = sp.Symbol(c.latent)
    p = {k: _value(v, None) for k, v in c.prior_args.items()}
    terms = [_Term(t, len(model.variables[t.observed].shape or ())) for t in c.terms]
    if c.prior == "Beta":  # alpha + successes, beta + trials - successes
        a = p["alpha"] + sum(t.total(t.y) for t in terms)
        b = p["beta"] + sum(t.total(t.other("n") * t.unit if t.term.family == "Binomial"
                                    else t.unit).doit() - t.total(t.y) for t in terms)
        return Posterior(c.latent, density("Beta", theta, a, b))
    if c.prior == "Gamma":
        a = p["alpha"] + sum(t.total(t.y) for t in terms)
        b = p["beta"] + sum(t.total(t.unit).doit() for t in terms)
        return Posterior(c.latent, density("Gamma", theta, a, b))
    if c.prior == "Normal":
        precision = 1 / p["sigma"] ** 2 + sum(t.total(t.unit / t.other("sigma") ** 2)
                                              for t in terms)
        weighted = p["mu"] / p["sigma"] ** 2 + sum(t.total(t.y / t.other("sigma") ** 2)
                                                   for t in terms)
        return Posterior(c.latent, density("Normal", theta, weighted / precision,
                                           1 / sp.sqrt(precision)))
    k = sp.Symbol("k", integer=True)  # Dirichlet: alpha_k + #{i: y_i = k}
    counts = sum(t.total(Indicator(sp.Eq(t.y, k)) if t.y is t.whole else
                         sp.Function("count")(t.whole, k)) for t in terms)
    alpha = p["alpha"]
    if isinstance(alpha, sp.Matrix):  # a vector literal: each component written out
        updated = sp.Tuple(*[a + counts.subs(k, j + 1) for j, a in enumerate(alpha)])
    else:  # ones(K), or a data vector: k -> alpha_k + #{i: y_i = k}
        alpha_k = sp.Integer(1) if str(alpha).startswith("ones(") else sp.IndexedBase(alpha)[k]
        updated = sp.Lambda(k, alpha_k + counts)
    return Posterior(c.latent, density("Dirichlet", theta, updated))


# ---- the whole explanation --------------------------------------------------------
def explain(model: GraphicalModel, latex: bool = False) -> str:
    """The explanation as text: formulas in Unicode art, or in LaTeX with `latex`."""
    sym = _Symbols(model)
    hidden = _unused_nets(model) | {f.base for f in model.flows.values()}
    unknown = [sym.symbol(v.name) for v in model.of_role("latent", "param", "net")
               if v.name not in hidden]
    observed = [sym.symbol(v.name) for v in model.of_role("observed")]
    lhs = sp.Function("p")(*unknown, *observed)
    out = [f"model {model.name}", "", "joint density:",
           _show(sp.Eq(lhs, joint(model), evaluate=False), latex)]
    defs = definitions(model)
    if defs:
        out += ["", "where:"] + [_show(d, latex) for d in defs]
    out += ["", "variables:"] + [f"  {line}" for line in roles(model)]
    out += ["", "inference plan:"] + [f"  {line}" for line in inference_plan(model)]
    try:
        posteriors = conjugate_posteriors(model)
    except NotConjugate as exc:
        out += ["", f"closed-form posterior: none ({exc})"]
    else:
        out += ["", "closed-form posterior (conjugate):"]
        for post in posteriors:
            given = density("p", sym.symbol(post.latent), *observed)
            out.append(_show(sp.Eq(given, post.expr, evaluate=False), latex))
    return "\n".join(out) + "\n"


class _Pretty(PrettyPrinter):
    """sympy's pretty printer, but a name with an underscore is printed as the model
    writes it: sympy reads `log_lam` as log with the subscript lam."""

    def _print_Symbol(self, e: sp.Symbol, bold_name: bool = False) -> prettyForm:
        if "_" in e.name:
            return prettyForm(e.name)
        return super()._print_Symbol(e, bold_name)


class _Latex(LatexPrinter):
    """sympy's LaTeX printer with the same rule for names with an underscore."""

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        if "_" in expr.name:
            return r"\mathit{" + expr.name.replace("_", r"\_") + "}"
        return str(super()._print_Symbol(expr, style))


def latex(e: sp.Expr) -> str:
    """LaTeX of an expression of the model, its names as the model writes them."""
    return str(_Latex({"order": "none"}).doprint(e))


def _show(e: sp.Expr, latex_output: bool) -> str:
    if latex_output:
        return "  " + latex(e)
    # sympy's box-drawing tables follow a module-wide flag, not the printer's setting;
    # set it for this call (as sympy.pretty does), whatever the terminal said at import
    previous = pretty_use_unicode(True)
    try:
        text = _Pretty({"use_unicode": True, "wrap_line": False, "order": "none"}).doprint(e)
    finally:
        pretty_use_unicode(previous)
    return "\n".join("  " + line.rstrip() for line in text.splitlines())
