"""Lower the syntax tree to the IR: resolve every name and give every variable its role.

Contract: returns a GraphicalModel whose variables have roles (data, observed, latent,
deterministic, transformed_data, param, net, const), whose statements list their loops
and the variables they read, and whose graph has an edge from each variable read to the
variable (or factor) defined; or raises one BgmError with every naming mistake found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from compiler import consts
from compiler.distributions import DISTRIBUTIONS
from compiler.functions import FUNCTIONS
from compiler.ir import GraphicalModel, Loop, Statement, Variable
from compiler.names import NET_KINDS, did_you_mean, reserved_reason
from compiler.walk import calls, free_names, target_exprs, type_exprs
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Note
from dsl.spans import Source

_DECLS = (n.DataDecl, n.ParamDecl, n.ConstDecl, n.NetDecl)
_ROLE_OF_DECL = {n.DataDecl: "data", n.ParamDecl: "param", n.ConstDecl: "const",
                 n.NetDecl: "net"}


@dataclass
class _Builder:
    source: Source
    errors: list[Diagnostic] = field(default_factory=list)
    variables: dict[str, Variable] = field(default_factory=dict)
    statements: list[Statement] = field(default_factory=list)
    loops: dict[int, Loop] = field(default_factory=dict)

    def error(self, message: str, span: Any, hint: str | None = None,
              notes: tuple[Note, ...] = ()) -> None:
        self.errors.append(Diagnostic(message, span, hint, notes))


def resolve(program: n.Program, source: Source) -> GraphicalModel:
    b = _Builder(source)
    _declare(program, b)
    _flatten(program.body, (), b)
    _define(b)
    names_in_scope = set(b.variables)
    for stmt in b.statements:
        _check_reads(stmt, names_in_scope, b)
    for v in b.variables.values():
        if v.decl is not None:
            _check_decl_reads(v, names_in_scope, b)
    if b.errors:
        raise BgmError(b.errors, source)
    _assign_roles(b)
    _fold_consts(b)
    if b.errors:
        raise BgmError(b.errors, source)
    name = program.name.id if program.name else _default_name(source)
    model = GraphicalModel(name, source, program, b.variables, b.statements, b.loops)
    model.graph = _graph(model)
    return model


def _default_name(source: Source) -> str:
    stem = source.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = [w for w in "".join(c if c.isalnum() else " " for c in stem).split() if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
    return name if name[0].isalpha() else "Model" + name


# ---- declarations ---------------------------------------------------------------------


def _declare(program: n.Program, b: _Builder) -> None:
    for stmt in program.body:
        if isinstance(stmt, _DECLS):
            _add_variable(b, stmt.name, _ROLE_OF_DECL[type(stmt)], stmt)
            if isinstance(stmt, n.NetDecl) and stmt.kind.id not in NET_KINDS:
                b.error(f"unknown kind of net '{stmt.kind.id}'", stmt.kind.span,
                        did_you_mean(stmt.kind.id, NET_KINDS) or
                        f"nets are {', '.join(sorted(NET_KINDS))}")


def _add_variable(b: _Builder, name: n.Name, role: str, decl: Any) -> None:
    reason = reserved_reason(name.id)
    if reason:
        b.error(f"cannot use '{name.id}' as a name: {reason}", name.span)
        return
    if name.id in b.variables:
        first = b.variables[name.id]
        b.error(f"'{name.id}' is declared twice", name.span,
                notes=(Note("first declared here", first.span),))
        return
    b.variables[name.id] = Variable(name.id, role, name.span, decl=decl,
                                    declared_type=getattr(decl, "type", None))


# ---- statements -----------------------------------------------------------------------


def _flatten(body: tuple[Any, ...], loops: tuple[Loop, ...], b: _Builder) -> None:
    for stmt in body:
        if isinstance(stmt, n.For):
            _check_loop_var(stmt, loops, b)
            loop = Loop(len(b.loops), stmt.var.id, stmt.range, stmt.span)
            b.loops[loop.id] = loop
            _flatten(stmt.body, loops + (loop,), b)
        elif isinstance(stmt, (n.Sample, n.Assign, n.Factor)):
            kind = {n.Sample: "sample", n.Assign: "assign", n.Factor: "factor"}[type(stmt)]
            target = stmt.target.name.id if kind != "factor" else None
            b.statements.append(Statement(len(b.statements), kind, stmt, loops, target,
                                          frozenset()))


def _check_loop_var(stmt: n.For, loops: tuple[Loop, ...], b: _Builder) -> None:
    reason = reserved_reason(stmt.var.id)
    if reason:
        b.error(f"cannot use '{stmt.var.id}' as a loop variable: {reason}", stmt.var.span)
    if any(loop.var == stmt.var.id for loop in loops):
        b.error(f"loop variable '{stmt.var.id}' is already used by an enclosing loop",
                stmt.var.span)


def _define(b: _Builder) -> None:
    """Create a variable for every target that is not declared, and record definitions."""
    for stmt in b.statements:
        if stmt.target is None:
            continue
        name = stmt.node.target.name
        existing = b.variables.get(name.id)
        if existing is None:
            reason = reserved_reason(name.id)
            if reason:
                b.error(f"cannot use '{name.id}' as a name: {reason}", name.span)
                continue
            role = "latent" if stmt.kind == "sample" else "deterministic"
            existing = b.variables[name.id] = Variable(name.id, role, name.span)
        elif existing.role in ("param", "const", "net"):
            kind = {"param": "a point parameter", "const": "a constant", "net": "a net"}
            b.error(f"'{name.id}' is {kind[existing.role]} and cannot be defined by "
                    f"'{'~' if stmt.kind == 'sample' else '='}'", name.span,
                    notes=(Note("declared here", existing.span),))
            continue
        _check_same_kind(existing, stmt, b)
        existing.defs.append(stmt.id)


def _check_same_kind(v: Variable, stmt: Statement, b: _Builder) -> None:
    if not v.defs:
        return
    first = b.statements[v.defs[0]]
    if first.kind != stmt.kind:
        b.error(f"'{v.name}' is defined both by '~' and by '='", stmt.node.target.name.span,
                hint="a variable is either random ('~') or deterministic ('='), not both",
                notes=(Note("first defined here", first.node.target.name.span),))


# ---- reads ----------------------------------------------------------------------------


def _check_reads(stmt: Statement, names: set[str], b: _Builder) -> None:
    loop_vars = {loop.var for loop in stmt.loops}
    reads: set[str] = set()
    exprs: list[Any] = [stmt.expr]
    if stmt.kind != "factor":
        exprs += list(target_exprs(stmt.node.target))
    if stmt.kind == "sample":
        exprs += list(type_exprs(stmt.node.type))
    for e in exprs:
        for name in free_names(e):
            if name.id in loop_vars:
                continue
            if name.id in names:
                reads.add(name.id)
            else:
                _undefined(name, names | loop_vars, b)
        is_dist = stmt.kind == "sample" and e is stmt.expr
        for call in calls(e):
            _check_callee(call, is_dist and call is e, names, b)
    object.__setattr__(stmt, "reads", frozenset(reads))


def _check_decl_reads(v: Variable, names: set[str], b: _Builder) -> None:
    exprs = list(type_exprs(v.declared_type))
    if isinstance(v.decl, n.ConstDecl):
        exprs.append(v.decl.value)
    if isinstance(v.decl, n.NetDecl):
        exprs += list(v.decl.args) + [k.value for k in v.decl.kwargs
                                      if not isinstance(k.value, n.String)]
    for e in exprs:
        for name in free_names(e):
            if name.id not in names:
                _undefined(name, names, b)
            elif name.id == v.name:
                b.error(f"'{v.name}' refers to itself in its own declaration", name.span)


def _undefined(name: n.Name, names: set[str], b: _Builder) -> None:
    if name.id in DISTRIBUTIONS:
        b.error(f"the distribution '{name.id}' is used as a value", name.span,
                hint=f"write '{name.id}(...)' on the right of '~'")
        return
    b.error(f"undefined name '{name.id}'", name.span, did_you_mean(name.id, names))


def _check_callee(call: Any, is_dist_position: bool, names: set[str], b: _Builder) -> None:
    func = call.func.id
    if func in DISTRIBUTIONS:
        if not is_dist_position:
            b.error(f"the distribution '{func}' can only appear on the right of '~'",
                    call.func.span, hint="use 'factor' with a log density for other terms")
        return
    if is_dist_position and func not in DISTRIBUTIONS:
        hint = did_you_mean(func, set(DISTRIBUTIONS))
        b.error(f"unknown distribution '{func}'", call.func.span,
                hint or "distributions are capitalised: Normal, Gamma, Bernoulli, ...")
        return
    if func in FUNCTIONS:
        return
    if func in names:
        return  # a net call; kinds and arities are checked by later passes
    b.error(f"unknown function '{func}'", call.func.span,
            did_you_mean(func, set(FUNCTIONS) | set(DISTRIBUTIONS)))


# ---- roles ----------------------------------------------------------------------------


def _assign_roles(b: _Builder) -> None:
    for v in b.variables.values():
        if not v.defs:
            continue
        first = b.statements[v.defs[0]]
        if v.role == "data":
            if first.kind == "sample":
                v.role = "observed"
            else:
                b.error(f"'{v.name}' is data and cannot be defined by '='",
                        first.node.target.name.span,
                        hint="'=' onto data is only for flows and implicit models (a net of "
                             "latents), which are not supported yet; to transform data, "
                             "define a new name")
    _mark_transformed_data(b)
    for stmt in b.statements:
        if stmt.kind == "sample" and stmt.target in b.variables:
            target = b.variables[stmt.target]
            if target.role == "deterministic":
                b.error(f"'~' on '{target.name}', which is computed from latent variables",
                        stmt.node.target.name.span,
                        hint="only data and transformed data may be observed with '~'; "
                             "a Jacobian would be needed otherwise")


def _mark_transformed_data(b: _Builder) -> None:
    """A `=` node computed from data, consts and transformed data alone (fixpoint)."""
    known = {"data", "observed", "const", "transformed_data"}
    changed = True
    while changed:
        changed = False
        for v in b.variables.values():
            if v.role != "deterministic":
                continue
            defs = [b.statements[i] for i in v.defs]
            if all(all(b.variables[r].role in known for r in s.reads if r != v.name)
                   for s in defs):
                v.role = "transformed_data"
                changed = True
    for v in b.variables.values():  # a `=` later observed with `~` is transformed data too
        if v.role == "transformed_data":
            samples = [s for s in b.statements if s.kind == "sample" and s.target == v.name]
            if samples:
                v.defs = [i for i in v.defs if b.statements[i].kind == "assign"]


def _fold_consts(b: _Builder) -> None:
    for v in b.variables.values():
        if v.role != "const":
            continue
        for name in free_names(v.decl.value):
            if b.variables[name.id].role != "const":
                b.error(f"const '{v.name}' reads '{name.id}', which is not a constant",
                        name.span, hint="a const is built from literals and other consts")
    if b.errors:
        return
    for v in b.variables.values():
        if v.role == "const":
            v.value = consts.evaluate(v.decl.value, b.variables, b)


# ---- graph ----------------------------------------------------------------------------


def _graph(model: GraphicalModel) -> nx.DiGraph:
    g = nx.DiGraph()
    for v in model.variables.values():
        g.add_node(v.name, kind="variable", role=v.role, span=v.span)
    for v in model.variables.values():
        for e in type_exprs(v.declared_type):
            for name in free_names(e):
                if name.id in model.variables and name.id != v.name:
                    g.add_edge(name.id, v.name)
    for stmt in model.statements:
        node = stmt.target if stmt.target is not None else f"factor@{stmt.span.line}"
        if stmt.target is None:
            g.add_node(node, kind="factor", role="factor", span=stmt.span, statement=stmt.id)
        for r in stmt.reads:
            if r != node:
                g.add_edge(r, node)
            else:
                g.add_edge(r, node, lagged=True)
        g.nodes[node].setdefault("loops", tuple(loop.var for loop in stmt.loops))
    return g
