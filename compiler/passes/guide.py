"""The `guide:` block (rule 21): the variational family q(latents | data), compiled as a
program of its own.

A guide is itself a generative program over the model's latents: it reads the data, the
consts and nets (its own or the model's), computes `=` nodes, and draws each latent it
covers with `~`. So it is split off the model and sent through the same passes (names,
shapes, nets, loops, supports), with every drawn latent given the type the model declares
for it; then the two are compared: each `~` of the guide must target a continuous latent
of the model, once, with the model's shape and support. Data is read, never observed.

`split_guide(program)` gives the model program (without the block, and without the nets
and params only the guide uses) and the guide program (or None).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from compiler.ir import GraphicalModel
from compiler.walk import calls, free_names, target_exprs, type_exprs
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Note
from dsl.spans import Span


def _statements(body: tuple[Any, ...]) -> list[Any]:
    """Every `~`, `=` and `factor` inside `body`, loops opened."""
    out: list[Any] = []
    for s in body:
        if isinstance(s, n.For):
            out += _statements(s.body)
        elif isinstance(s, (n.Sample, n.Assign, n.Factor)):
            out.append(s)
    return out


def _names_read(stmts: list[Any]) -> set[str]:
    names: set[str] = set()
    for s in stmts:
        exprs: list[Any] = [s.dist if isinstance(s, n.Sample) else
                            s.value if isinstance(s, n.Assign) else s.expr]
        if not isinstance(s, n.Factor):
            exprs += list(target_exprs(s.target))
        if isinstance(s, n.Sample):
            exprs += list(type_exprs(s.type))
        for e in exprs:
            names |= {x.id for x in free_names(e)}
            names |= {c.func.id for c in calls(e) if isinstance(c, n.Call)}
    return names


def split_guide(program: n.Program) -> tuple[n.Program, n.Program | None]:
    """(the model program, the guide program or None)."""
    guides = [s for s in program.body if isinstance(s, n.Guide)]
    if not guides:
        return program, None
    guide = guides[0]
    rest = [s for s in program.body if not isinstance(s, n.Guide)]
    model_reads = _names_read(_statements(tuple(rest)))
    guide_stmts = _statements(guide.body)
    guide_reads = _names_read(guide_stmts)
    # nets and params the model never uses belong to the guide alone
    guide_only = {s.name.id for s in rest if isinstance(s, (n.NetDecl, n.ParamDecl))
                  and s.name.id in guide_reads and s.name.id not in model_reads}
    model_body = tuple(s for s in rest if not (isinstance(s, (n.NetDecl, n.ParamDecl))
                                               and s.name.id in guide_only))
    types = _declared_types(rest)
    shared = tuple(s for s in rest if isinstance(s, (n.DataDecl, n.ConstDecl)) or
                   isinstance(s, (n.NetDecl, n.ParamDecl)) and s.name.id in guide_reads)
    body = shared + tuple(_typed(s, types) for s in guide.body)
    name = n.Name(f"{program.name.id if program.name else 'Model'}Guide", span=guide.span)
    return replace(program, body=model_body), replace(program, name=name, body=body)


def _declared_types(body: list[Any]) -> dict[str, n.Type]:
    """The type each latent of the model is declared with (`z[i]: real[L] ~ ...`)."""
    return {s.target.name.id: s.type for s in _statements(tuple(body))
            if isinstance(s, n.Sample) and s.type is not None}


def _typed(stmt: Any, types: dict[str, n.Type]) -> Any:
    """The guide's `~` on a model latent takes the model's declared type (same support)."""
    if isinstance(stmt, n.For):
        return replace(stmt, body=tuple(_typed(s, types) for s in stmt.body))
    if isinstance(stmt, n.Sample) and stmt.type is None and stmt.target.name.id in types:
        return replace(stmt, type=types[stmt.target.name.id])
    return stmt


def check_guide(model: GraphicalModel, guide: GraphicalModel) -> None:
    """Rule 21 between the two analysed programs; one BgmError with every mistake."""
    errors: list[Diagnostic] = []
    drawn: dict[str, Any] = {}
    for stmt in guide.statements:
        if stmt.target is None:
            errors.append(Diagnostic("a guide has no 'factor' statements", _word(stmt.span),
                                     "the guide only draws latents ('~') and computes '='"))
            continue
        target = model.variables.get(stmt.target)
        if stmt.kind == "assign":
            if target is not None and target.role in ("latent", "observed"):
                errors.append(Diagnostic(
                    f"the guide defines the model's {target.role} '{stmt.target}' by '='",
                    stmt.node.target.span, "the guide draws latents with '~'; give its "
                    "intermediate values names of their own"))
            continue
        if target is None:
            errors.append(Diagnostic(f"the guide draws '{stmt.target}', which is not a "
                                     "variable of the model", stmt.node.target.span,
                                     "each '~' of a guide targets a latent of the model"))
        elif target.role in ("data", "observed", "transformed_data"):
            errors.append(Diagnostic(f"the guide observes the data '{stmt.target}'",
                                     stmt.node.target.span,
                                     "a guide reads data, it never observes it (rule 21)"))
        elif target.role != "latent":
            errors.append(Diagnostic(f"the guide draws '{stmt.target}', which is a "
                                     f"{target.role} of the model, not a latent",
                                     stmt.node.target.span))
        elif target.discrete:
            errors.append(Diagnostic(
                f"'{stmt.target}' is a discrete latent: it is summed out exactly, so the "
                "guide cannot draw it", stmt.node.target.span,
                "remove its '~' from the guide"))
        elif stmt.target in drawn and len(model.variables[stmt.target].defs) == 1:
            errors.append(Diagnostic(f"the guide draws '{stmt.target}' twice",
                                     stmt.node.target.span,
                                     notes=(Note("first drawn here", drawn[stmt.target]),)))
        else:
            drawn.setdefault(stmt.target, stmt.node.target.span)
    if errors:
        raise BgmError(errors, model.source)
    for name, span in drawn.items():
        m, g = model.variables[name], guide.variables[name]
        if m.shape != g.shape:
            errors.append(Diagnostic(
                f"the guide draws '{name}' with shape {_shape(g.shape)}, the model has "
                f"{_shape(m.shape)}", span))
            continue
        ms, gs = model.supports[name], guide.supports[name]
        if (ms.kind, ms.describe()) != (gs.kind, gs.describe()):
            errors.append(Diagnostic(
                f"the guide's distribution for '{name}' has support {gs.describe()}, but "
                f"the model's '{name}' lives on {ms.describe()}", span,
                "use a guide distribution with the same support (rule 21), such as "
                "LogNormal for a positive latent"))
    if errors:
        raise BgmError(errors, model.source)


def _shape(shape: Any) -> str:
    return "scalar" if not shape else "[" + ", ".join(str(d) for d in shape) + "]"


def _word(span: Span) -> Span:
    return Span(span.line, span.column, span.line, span.column + len("factor"))
