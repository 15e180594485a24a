"""`x[i] ~ Diffusion(eps, steps=T, schedule="linear")`: a denoising diffusion model over
data vectors (rule 20; runtime/diffusion.py has the maths).

Its arguments are not values like other distributions' parameters: the first is a
declared MLP, the denoiser, called as eps(x_t, t / T); `steps` is an integer known when
the data is loaded and `schedule` a string. This module checks them and records them on
`model.diffusions` (statement id -> DiffusionCall); the binding it returns has no value
arguments, and an event of the data's width.

Contract: `diffusion_call(model, call, stmt, ints)` returns (DiffusionCall, event size)
or raises Problem pointing at the argument at fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.ir import GraphicalModel, Statement
from compiler.passes.nets import signature
from compiler.sizes import NotASize, Size, size_of
from dsl import nodes as n
from dsl.diagnostics import Problem

SCHEDULES = ("linear", "cosine")  # runtime.diffusion.SCHEDULES (a test checks they agree)
DEFAULT_STEPS = 1000
FORM = 'Diffusion(eps, steps=1000, schedule="linear")'


@dataclass(frozen=True)
class DiffusionCall:
    data: str
    net: str
    steps: Size
    schedule: str


def diffusion_call(model: GraphicalModel, call: n.Call, stmt: Statement,
                   ints: dict[str, Any]) -> tuple[DiffusionCall, Size]:
    target = model.variables[stmt.target]  # type: ignore[index]
    if target.role != "observed":
        raise Problem(f"Diffusion is a distribution over data; '{target.name}' is not data",
                      stmt.node.target.name.span,
                      "declare it with 'data' (a diffusion model is trained on observed "
                      "vectors)")
    if len(call.args) != 1 or not isinstance(call.args[0], n.Name):
        at = call.args[1] if len(call.args) > 1 else call.func
        raise Problem("Diffusion takes its denoising net first, then keywords", at.span, FORM)
    name = call.args[0]
    net = model.variables.get(name.id)
    if net is None or net.role != "net" or net.decl.kind.id != "MLP":
        what = f"a {net.decl.kind.id}" if net is not None and net.role == "net" else \
            "not a net"
        raise Problem(f"the first argument of Diffusion must be a net declared as an MLP; "
                      f"'{name.id}' is {what}", name.span,
                      "net eps = MLP(D + 16, 128, 128, D): the data, then the time features")
    steps, schedule = Size.const(DEFAULT_STEPS), "linear"
    seen: set[str] = set()
    for k in call.kwargs:
        if k.name in seen:
            raise Problem(f"Diffusion is given '{k.name}' twice", k.span)
        seen.add(k.name)
        if k.name == "steps":
            steps = _steps(k, ints)
        elif k.name == "schedule":
            if not isinstance(k.value, n.String) or k.value.value not in SCHEDULES:
                raise Problem("the schedule of a Diffusion is \"linear\" or \"cosine\"",
                              k.value.span)
            schedule = k.value.value
        else:
            raise Problem(f"Diffusion takes no keyword '{k.name}'", k.span, FORM)
    sig = signature(model, net, ints)
    _check_widths(sig.sizes, name)
    return DiffusionCall(target.name, name.id, steps, schedule), sig.outputs


def _steps(k: n.Keyword, ints: dict[str, Any]) -> Size:
    try:
        steps = size_of(k.value, ints)
    except NotASize as exc:
        raise Problem(f"the steps of a Diffusion must be an integer known when the data is "
                      f"loaded ({exc})", k.value.span) from None
    if steps.constant is not None and steps.constant < 1:
        raise Problem("a Diffusion needs at least 1 step", k.value.span)
    return steps


def _check_widths(sizes: tuple[Size, ...], name: n.Name) -> None:
    """The net maps the data (D values) and the time features (1 column, t / T, or an
    even number: sines and cosines) to D values: in - out is 1 or even."""
    extra = sizes[0] - sizes[-1]
    if extra.constant is None:
        return  # sizes known at load: runtime.diffusion.check_widths reports it then
    if extra.constant < 1 or (extra.constant > 1 and extra.constant % 2):
        raise Problem(f"the diffusion net '{name.id}' must take the data and its time "
                      f"features: its inputs minus its outputs is {extra.constant}, not 1 "
                      "(t / T itself) or an even number (sin and cos of t / T)", name.span,
                      "net eps = MLP(D + 16, 128, 128, D) for D data values")
