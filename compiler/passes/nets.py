"""Nets (rule 20): each kind's published signature, so calls are checked like any other
expression. A net's weights are point parameters of the model (fitted by MLE, MAP or
the optimisers; never integrated), one flat vector per net.

Supported now:
- `MLP(in, hidden..., out, act=relu)`, a fully connected network applied to the last
  dimension of its argument: `f(x)` with x [..., in] gives [..., out];
- causal sequence nets over tokens 1..V, `GRU(vocab=V, dim=H, layers=1, context=128)` and
  `Transformer(vocab=V, dim=D, layers=2, heads=4, context=128)`: `f(x[a..t-c])` is the
  vector of V logits of what follows the prefix (runtime/seqnets.py).
- invertible nets for flows (rule 13), `RealNVP(dim, layers=4, hidden=64)` (affine
  couplings) and `NeuralSpline(dim, layers=8, hidden=64, bins=8, bound=4)`
  (rational-quadratic spline couplings on [-bound, bound], the identity outside).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Variable
from compiler.passes.ranges import IndexRule, record
from compiler.sizes import NotASize, Size, int_env, size_of
from dsl import nodes as n
from dsl.diagnostics import BgmError, Problem

SUPPORTED = ("MLP", "GRU", "Transformer", "RealNVP", "NeuralSpline")
SEQUENCE = {  # keyword: default (None: required)
    "GRU": {"vocab": None, "dim": None, "layers": 1, "context": 128},
    "Transformer": {"vocab": None, "dim": None, "layers": 2, "heads": 4, "context": 128},
}
INVERTIBLE = {"RealNVP": {"dim": None, "layers": 4, "hidden": 64},
              "NeuralSpline": {"dim": None, "layers": 8, "hidden": 64, "bins": 8,
                               "bound": 4}}
# the runtime's functions of each invertible kind: NAME(w, shape, u), NAME_inverse(w,
# shape, x), NAME_size(*shape) and NAME_init_scale(*shape) (runtime/flows.py)
FLOW_FUNCTIONS = {"RealNVP": "realnvp", "NeuralSpline": "spline_flow"}
KEYWORDS = {**SEQUENCE, **INVERTIBLE}
DEFAULT_ACTIVATION = "relu"


@dataclass(frozen=True)
class NetSignature:
    kind: str
    sizes: tuple[Size, ...]  # MLP: in, hidden..., out; sequence nets: the SEQUENCE keywords
    activation: str

    @property
    def sequence(self) -> bool:
        return self.kind in SEQUENCE

    @property
    def invertible(self) -> bool:
        return self.kind in INVERTIBLE

    def option(self, name: str) -> Size:
        return self.sizes[list(KEYWORDS[self.kind]).index(name)]

    @property
    def inputs(self) -> Size:
        return self.sizes[0]

    @property
    def outputs(self) -> Size:
        if self.sequence:
            return self.option("vocab")
        return self.option("dim") if self.invertible else self.sizes[-1]


def signature(model: GraphicalModel, v: Variable, ints: dict[str, Any]) -> NetSignature:
    """The signature of the net `v` from its declaration; a Problem when it has none."""
    decl: n.NetDecl = v.decl
    kind = decl.kind.id
    if kind not in SUPPORTED:
        raise Problem(f"nets of kind {kind} are not supported yet", decl.kind.span,
                      f"supported now: {', '.join(SUPPORTED)}")
    if kind in KEYWORDS:
        return _keywords(model, decl, kind, ints)
    if len(decl.args) < 2:
        raise Problem("MLP takes its layer sizes: MLP(in, hidden..., out, act=relu)",
                      decl.span)
    sizes = []
    for arg in decl.args:
        try:
            sizes.append(size_of(arg, ints))
        except NotASize as exc:
            raise Problem(f"a layer size of an MLP must be an integer known when the data "
                          f"is loaded ({exc})", getattr(arg, "span", decl.span)) from None
        _check_width(model, sizes[-1], arg, "a layer size of an MLP")
    activation = DEFAULT_ACTIVATION
    for k in decl.kwargs:
        if k.name != "act":
            raise Problem(f"MLP takes no keyword '{k.name}'", k.span, "MLP(in, hidden..., "
                          "out, act=relu)")
        activation = k.value.id if isinstance(k.value, n.Name) else activation
    return NetSignature(kind, tuple(sizes), activation)


# The widest layer a net may have: wider is a typo (a million units by a million inputs
# is 8 TB of weights), reported at check rather than as an allocation failure.
MAX_WIDTH = 1_000_000


def _check_width(model: GraphicalModel, size: Size, node: Any, what: str) -> None:
    """A layer size is at least 1 and at most MAX_WIDTH: at check when it is a constant,
    when the data is loaded otherwise (compiler/passes/ranges.py)."""
    if size.constant is None:
        record(model.range_rules, IndexRule(size, Size.const(MAX_WIDTH), (),
                                            getattr(node, "span", None), what))
    elif not 1 <= size.constant <= MAX_WIDTH:
        raise Problem(f"{what} must be between 1 and {MAX_WIDTH:,}; this is {size.constant}",
                      getattr(node, "span", None))


def _keywords(model: GraphicalModel, decl: n.NetDecl, kind: str,
              ints: dict[str, Any]) -> NetSignature:
    table = KEYWORDS[kind]
    form = ", ".join(f"{k}={'...' if v is None else v}" for k, v in table.items())
    if decl.args and kind in SEQUENCE:
        raise Problem(f"{kind} takes keywords: {kind}({form})", decl.args[0].span)
    if len(decl.args) > len(table):
        raise Problem(f"{kind} takes at most {len(table)} sizes: {kind}({form})",
                      decl.args[len(table)].span)
    given: dict[str, Any] = {}
    positional = [n.Keyword(name, arg, span=getattr(arg, "span", decl.span))
                  for name, arg in zip(table, decl.args, strict=False)]
    for k in (*positional, *decl.kwargs):
        if k.name in given:
            raise Problem(f"{kind} is given '{k.name}' twice", k.span)
        if k.name not in table:
            raise Problem(f"{kind} takes no keyword '{k.name}'", k.span, f"{kind}({form})")
        try:
            given[k.name] = size_of(k.value, ints)
        except NotASize as exc:
            raise Problem(f"'{k.name}' of a {kind} must be an integer known when the data "
                          f"is loaded ({exc})", k.span) from None
        _check_width(model, given[k.name], k.value, f"'{k.name}' of a {kind}")
    sizes = []
    for name, default in table.items():
        if name not in given and default is None:
            raise Problem(f"{kind} needs '{name}='", decl.span, f"{kind}({form})")
        sizes.append(given.get(name, Size.const(default) if default is not None else None))
    dim, heads = (given.get("dim"), sizes[list(table).index("heads")]) \
        if kind == "Transformer" else (None, None)
    if dim is not None and dim.constant and heads.constant and dim.constant % heads.constant:
        raise Problem(f"the Transformer's dim ({dim}) must be a multiple of heads ({heads})",
                      decl.span)
    return NetSignature(kind, tuple(sizes), "")


def check_nets(model: GraphicalModel) -> None:
    """Every declared net has a signature bgmc supports (called or not)."""
    ints = int_env(model)
    errors = []
    for v in model.of_role("net"):
        try:
            signature(model, v, ints)
        except Problem as exc:
            errors.append(exc.diagnostic)
    if errors:
        raise BgmError(errors, model.source)
