"""Nets (rule 20): each kind's published signature, so calls are checked like any other
expression. A net's weights are point parameters of the model (fitted by MLE, MAP or
the optimisers; never integrated), one flat vector per net.

Supported now: `MLP(in, hidden..., out, act=relu)`, a fully connected network applied to
the last dimension of its argument: `f(x)` with x [..., in] gives [..., out]. The other
kinds (`GRU`, `Transformer`, `RealNVP`) are reported as not supported yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Variable
from compiler.sizes import NotASize, Size, size_of
from dsl import nodes as n
from dsl.diagnostics import Problem

SUPPORTED = ("MLP",)
DEFAULT_ACTIVATION = "relu"


@dataclass(frozen=True)
class NetSignature:
    kind: str
    sizes: tuple[Size, ...]  # in, hidden..., out
    activation: str

    @property
    def inputs(self) -> Size:
        return self.sizes[0]

    @property
    def outputs(self) -> Size:
        return self.sizes[-1]


def signature(model: GraphicalModel, v: Variable, ints: dict[str, Any]) -> NetSignature:
    """The signature of the net `v` from its declaration; a Problem when it has none."""
    decl: n.NetDecl = v.decl
    kind = decl.kind.id
    if kind not in SUPPORTED:
        raise Problem(f"nets of kind {kind} are not supported yet", decl.kind.span,
                      f"supported now: {', '.join(SUPPORTED)}")
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
    activation = DEFAULT_ACTIVATION
    for k in decl.kwargs:
        if k.name != "act":
            raise Problem(f"MLP takes no keyword '{k.name}'", k.span, "MLP(in, hidden..., "
                          "out, act=relu)")
        activation = k.value.id if isinstance(k.value, n.Name) else activation
    return NetSignature(kind, tuple(sizes), activation)


def check_nets(model: GraphicalModel) -> None:
    """Every declared net has a signature bgmc supports (called or not)."""
    from compiler.shapes import int_env  # noqa: PLC0415
    from dsl.diagnostics import BgmError  # noqa: PLC0415
    ints = int_env(model)
    errors = []
    for v in model.of_role("net"):
        try:
            signature(model, v, ints)
        except Problem as exc:
            errors.append(exc.diagnostic)
    if errors:
        raise BgmError(errors, model.source)
