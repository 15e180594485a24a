"""The distribution table as plain data: what the compiler knows without importing torch.

Each entry gives the parameterisations (the first binds positionally, the others are
chosen by keyword, rule 18), each parameter's support and event rank, the support of
the variable, its event rank and whether it is discrete. runtime/distributions.py maps
the same names onto torch.distributions; tests/test_distribution_tables.py checks that
the two tables agree.

Support specs are tuples:
  ("real",)                         the real line
  ("interval", lo, hi)              lo/hi: a number, a parameter name, or None (unbounded)
  ("simplex",) ("cholesky_corr",) ("pos_def",)
  ("int", lo, hi)                   lo/hi: an int, a parameter name, "len:p" (size of the
                                    last dimension of parameter p) or None (unbounded)
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

SupportSpec = tuple[object, ...]


@dataclass(frozen=True)
class Param:
    name: str
    support: str = "real"  # real | positive | unit | simplex | int_nonneg | pos_def | cholesky
    rank: int = 0  # dimensions of the argument this parameter consumes as one value
    aliases: tuple[str, ...] = ()

    def accepts(self, name: str) -> bool:
        return name == self.name or name in self.aliases


@dataclass(frozen=True)
class DistSpec:
    name: str
    forms: tuple[tuple[Param, ...], ...]
    support: SupportSpec
    event_rank: int = 0
    event_from: str | None = None  # parameter whose trailing dims are the event shape
    discrete: bool = False
    improper: bool = False

    def param_names(self) -> list[str]:
        return [p.name for form in self.forms for p in form]


def _p(name: str, support: str = "real", rank: int = 0, *aliases: str) -> Param:
    return Param(name, support, rank, tuple(aliases))


_REAL: SupportSpec = ("real",)
_POSITIVE: SupportSpec = ("interval", 0.0, None)
_UNIT: SupportSpec = ("interval", 0.0, 1.0)

_TABLE = [
    DistSpec("Normal", ((_p("mu", "real", 0, "loc"), _p("sigma", "positive", 0, "scale")),),
             _REAL),
    DistSpec("HalfNormal", ((_p("sigma", "positive", 0, "scale"),),), _POSITIVE),
    DistSpec("Cauchy", ((_p("mu", "real", 0, "loc"), _p("sigma", "positive", 0, "scale")),),
             _REAL),
    DistSpec("HalfCauchy", ((_p("sigma", "positive", 0, "scale"),),), _POSITIVE),
    DistSpec("StudentT", ((_p("nu", "positive", 0, "df"), _p("mu", "real", 0, "loc"),
                           _p("sigma", "positive", 0, "scale")),), _REAL),
    DistSpec("Laplace", ((_p("mu", "real", 0, "loc"), _p("b", "positive", 0, "scale")),),
             _REAL),
    DistSpec("Gumbel", ((_p("mu", "real", 0, "loc"), _p("beta", "positive", 0, "scale")),),
             _REAL),
    DistSpec("Logistic", ((_p("mu", "real", 0, "loc"), _p("sigma", "positive", 0, "scale")),),
             _REAL),
    DistSpec("Exponential", ((_p("beta", "positive", 0, "rate", "lambda"),),), _POSITIVE),
    DistSpec("Gamma", ((_p("alpha", "positive", 0, "shape", "concentration"),
                        _p("beta", "positive", 0, "rate")),), _POSITIVE),
    DistSpec("InverseGamma", ((_p("alpha", "positive", 0, "shape", "concentration"),
                               _p("beta", "positive", 0, "scale")),), _POSITIVE),
    DistSpec("Beta", ((_p("alpha", "positive", 0, "concentration1"),
                       _p("beta", "positive", 0, "concentration0")),), _UNIT),
    DistSpec("Uniform", ((_p("alpha", "real", 0, "low", "lower"),
                          _p("beta", "real", 0, "high", "upper")),),
             ("interval", "alpha", "beta")),
    DistSpec("LogNormal", ((_p("mu", "real", 0, "loc"), _p("sigma", "positive", 0, "scale")),),
             _POSITIVE),
    DistSpec("Weibull", ((_p("alpha", "positive", 0, "shape", "concentration"),
                          _p("sigma", "positive", 0, "scale")),), _POSITIVE),
    DistSpec("ChiSquare", ((_p("nu", "positive", 0, "df"),),), _POSITIVE),
    DistSpec("Pareto", ((_p("y_min", "positive", 0, "scale"), _p("alpha", "positive")),),
             ("interval", "y_min", None)),
    DistSpec("Flat", ((),), _REAL, improper=True),
    DistSpec("HalfFlat", ((),), _POSITIVE, improper=True),
    DistSpec("Bernoulli", ((_p("p", "unit", 0, "probs", "theta"),), (_p("logits", "real"),)),
             ("int", 0, 1), discrete=True),
    DistSpec("Binomial", ((_p("n", "int_nonneg", 0, "total_count", "N"),
                           _p("p", "unit", 0, "probs", "theta")),
                          (_p("n", "int_nonneg", 0, "total_count", "N"), _p("logits", "real"))),
             ("int", 0, "n"), discrete=True),
    DistSpec("Poisson", ((_p("rate", "positive", 0, "lambda"),), (_p("log_rate", "real"),)),
             ("int", 0, None), discrete=True),
    DistSpec("NegativeBinomial", ((_p("mu", "positive"), _p("phi", "positive")),
                                  (_p("log_mu", "real"), _p("phi", "positive"))),
             ("int", 0, None), discrete=True),
    DistSpec("Categorical", ((_p("p", "simplex", 1, "probs", "theta"),),
                             (_p("logits", "real", 1),)),
             ("int", 1, "len:p"), discrete=True),
    DistSpec("DiscreteUniform", ((_p("lower", "int", 0, "low"), _p("upper", "int", 0, "high")),),
             ("int", "lower", "upper"), discrete=True),
    DistSpec("Dirichlet", ((_p("alpha", "positive", 1, "concentration"),),), ("simplex",),
             event_rank=1, event_from="alpha"),
    DistSpec("MultivariateNormal",
             ((_p("mu", "real", 1, "loc"), _p("Sigma", "pos_def", 2, "covariance_matrix")),
              (_p("mu", "real", 1, "loc"), _p("L", "cholesky", 2, "scale_tril")),
              (_p("mu", "real", 1, "loc"), _p("precision", "pos_def", 2, "precision_matrix"))),
             _REAL, event_rank=1, event_from="mu"),
    # a denoising diffusion model over data vectors; its arguments are checked by
    # compiler/passes/diffusion.py (a net, steps=, schedule=), not bound like the others
    DistSpec("Diffusion", ((),), _REAL, event_rank=1),
    DistSpec("LKJCholesky", ((_p("eta", "positive", 0, "concentration"),),),
             ("cholesky_corr",), event_rank=2, event_from=None),
]

DISTRIBUTIONS: dict[str, DistSpec] = {d.name: d for d in _TABLE}


@dataclass(frozen=True)
class BindingProblem:
    """Why a call fits no parameterisation, and which argument to point at (an index
    into the positional arguments followed by the keywords; None: the whole call)."""

    message: str
    argument: int | None = None
    hint: str | None = None


def binding_problem(spec: DistSpec, n_args: int, keywords: list[str]) -> BindingProblem | None:
    """None when some parameterisation of `spec` accepts these arguments."""
    return None if bind(spec, n_args, keywords) is not None else _explain(spec, n_args, keywords)


def bind(spec: DistSpec, n_args: int, keywords: list[str]) -> tuple[int, list[Param]] | None:
    """The first parameterisation accepting n positional arguments then the keywords,
    as (form index, parameters in argument order)."""
    for index, form in enumerate(spec.forms):
        if n_args > len(form):
            continue
        chosen = list(form[:n_args])
        rest = list(form[n_args:])
        ok = True
        for kw in keywords:
            match = next((p for p in rest if p.accepts(kw)), None)
            if match is None:
                ok = False
                break
            rest.remove(match)
            chosen.append(match)
        if ok and not rest:
            return index, chosen
    return None


def _signature(spec: DistSpec) -> str:
    """`Bernoulli(p) or Bernoulli(logits=...)`: forms after the first are chosen by the
    keywords that differ from the first form (rule 18)."""
    first = spec.forms[0]

    def shown(form: tuple[Param, ...], i: int, p: Param) -> str:
        same = form is first or (i < len(first) and first[i] == p)
        return p.name if same else f"{p.name}=..."
    forms = [f"{spec.name}({', '.join(shown(form, i, p) for i, p in enumerate(form))})"
             for form in spec.forms]
    return " or ".join(forms)


def _explain(spec: DistSpec, n_args: int, keywords: list[str]) -> BindingProblem:
    """The first mistake a reader would spot: an unknown keyword, a parameter given twice,
    too many arguments, then too few."""
    written = f"it is written {_signature(spec)}"
    known = {name for form in spec.forms for p in form for name in (p.name, *p.aliases)}
    for i, kw in enumerate(keywords):
        if kw not in known:
            close = difflib.get_close_matches(kw, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"{written}; {_aliases(spec)}"
            return BindingProblem(f"{spec.name} has no parameter '{kw}'", n_args + i, hint)
    twice = _given_twice(spec, n_args, keywords)
    if twice is not None:
        return twice
    most = max(len(form) for form in spec.forms)
    given = n_args + len(keywords)
    count = f"{spec.name} takes {_count(spec)}, got {given}"
    if given > most:
        return BindingProblem(count, most if n_args > most else None, written)
    return BindingProblem(count, None, written)


def _given_twice(spec: DistSpec, n_args: int, keywords: list[str]) -> BindingProblem | None:
    """A keyword naming a parameter already given by position or by an earlier keyword."""
    for form in spec.forms:
        taken = [p.name for p in form[:n_args]]
        for i, kw in enumerate(keywords):
            param = next((p for p in form if p.accepts(kw)), None)
            if param is None:
                break
            if param.name in taken:
                return BindingProblem(f"{spec.name}'s parameter {param.name} is given twice",
                                      n_args + i, f"it is written {_signature(spec)}")
            taken.append(param.name)
    return None


def _count(spec: DistSpec) -> str:
    sizes = sorted({len(form) for form in spec.forms})
    words = " or ".join(str(k) for k in sizes)
    return f"{words} argument{'' if sizes == [1] else 's'}"


def _aliases(spec: DistSpec) -> str:
    names = []
    for form in spec.forms:
        for p in form:
            text = p.name + (f" (or {', '.join(p.aliases)})" if p.aliases else "")
            if text not in names:
                names.append(text)
    return "its parameters are " + ", ".join(names) if names else "it takes no parameters"
