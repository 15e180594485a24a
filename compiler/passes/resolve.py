"""Lower the syntax tree to the IR: resolve every name and give every variable its role.

Contract: returns a GraphicalModel whose variables have roles (data, observed, latent,
deterministic, transformed_data, param, net, const), whose statements list their loops
and the variables they read, and whose graph has an edge from each variable read to the
variable (or factor) defined; or raises one BgmError with every naming mistake found.
A name defined by `=` is deterministic (transformed data when computed from data alone);
its `~` statements observe it, which rule 13 allows for transformed data only. Features
of later versions (calling nets, guides, `=` onto data) are reported here, where they
are first seen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from compiler import consts
from compiler.ir import GraphicalModel, Loop, Statement, Variable
from compiler.passes.nets import INVERTIBLE, SUPPORTED
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.tables.functions import FUNCTIONS
from compiler.tables.names import ACTIVATIONS, NET_KINDS, did_you_mean, reserved_reason
from compiler.tables.synonyms import known_distribution, known_function
from compiler.walk import calls, free_names, target_exprs, type_exprs
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Note
from dsl.spans import Source, Span

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
    rejected: set[str] = field(default_factory=set)  # reserved names already reported
    # undefined names: the first use of each and the names in scope there
    unknown: dict[str, tuple[n.Name, set[str]]] = field(default_factory=dict)

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
    _report_undefined(b)
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
    # ASCII only: a letter such as 'ｉ' would NFKC-normalise into another name in Python
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in stem).split()
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
    if _rejected(name, b):
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
                stmt.var.span, "give the inner loop its own variable, such as 'j'")


def _define(b: _Builder) -> None:
    """Create a variable for every target that is not declared, and record definitions."""
    for stmt in b.statements:
        if stmt.target is None:
            continue
        name = stmt.node.target.name
        existing = b.variables.get(name.id)
        if existing is None:
            if _rejected(name, b):
                continue
            # the role is provisional: _assign_roles decides once every definition is seen
            existing = b.variables[name.id] = Variable(name.id, "latent", name.span)
        elif existing.role in ("param", "const", "net"):
            kind = {"param": "a point parameter", "const": "a constant", "net": "a net"}
            b.error(f"'{name.id}' is {kind[existing.role]} and cannot be defined by "
                    f"'{'~' if stmt.kind == 'sample' else '='}'", name.span,
                    _redefined_hint(existing.role),
                    notes=(Note("declared here", existing.span),))
            continue
        elif existing.role == "data" and getattr(stmt.node, "type", None) is not None:
            b.error(f"'{name.id}' is data: its type comes from its declaration, not from "
                    "the '~'", stmt.node.type.span or name.span,
                    "remove the type from this statement",
                    notes=(Note("declared here", existing.span),))
            continue
        existing.defs.append(stmt.id)


def _redefined_hint(role: str) -> str:
    return {"param": "a 'param' has no prior; to give it one, remove its 'param' "
                     "declaration and keep the '~'",
            "const": "a const gets its value in its declaration",
            "net": "a net is defined by its declaration"}[role]


def _rejected(name: n.Name, b: _Builder) -> bool:
    """Report a reserved name once; later reads of it stay silent (no cascade)."""
    reason = reserved_reason(name.id)
    if reason is None:
        return False
    if name.id not in b.rejected:
        b.error(f"cannot use '{name.id}' as a name: {reason}", name.span,
                "choose another name")
    b.rejected.add(name.id)
    return True


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
            if call.func.id in b.variables and b.variables[call.func.id].role == "net":
                reads.add(call.func.id)  # a net's weights are read where it is called
    object.__setattr__(stmt, "reads", frozenset(reads))


def _check_decl_reads(v: Variable, names: set[str], b: _Builder) -> None:
    exprs = list(type_exprs(v.declared_type))
    if isinstance(v.decl, n.ConstDecl):
        exprs.append(v.decl.value)
    if isinstance(v.decl, n.NetDecl):
        exprs += list(v.decl.args) + [k.value for k in v.decl.kwargs
                                      if not _check_activation(k, b)]
    for e in exprs:
        for name in free_names(e):
            if name.id not in names:
                _undefined(name, names, b)
            elif name.id == v.name:
                b.error(f"'{v.name}' refers to itself in its own declaration", name.span)


def _check_activation(k: n.Keyword, b: _Builder) -> bool:
    """True when a net's keyword is not an expression: a string, or `act=NAME`, whose name
    comes from the activations' own namespace (rule 20) and is checked here."""
    if isinstance(k.value, n.String):
        return True
    if k.name != "act" or not isinstance(k.value, n.Name):
        return False
    if k.value.id not in ACTIVATIONS:
        b.error(f"unknown activation '{k.value.id}'", k.value.span,
                did_you_mean(k.value.id, ACTIVATIONS) or
                f"activations are {', '.join(sorted(ACTIVATIONS))}")
    return True


def _undefined(name: n.Name, names: set[str], b: _Builder) -> None:
    """Note an undefined name; only its first use in the file is reported (one typo,
    one error)."""
    seen = b.unknown.get(name.id)
    if seen is None or _before(name.span, seen[0].span):
        b.unknown[name.id] = (name, names)


def _before(a: Span, b: Span) -> bool:
    return (a.line, a.column) < (b.line, b.column)


def _report_undefined(b: _Builder) -> None:
    for name, names in b.unknown.values():
        _report_unknown_name(name, names, b)


def _report_unknown_name(name: n.Name, names: set[str], b: _Builder) -> None:
    if name.id in b.rejected:
        return  # already reported as a reserved name
    if name.id in DISTRIBUTIONS:
        b.error(f"the distribution '{name.id}' is used as a value", name.span,
                hint=f"write '{name.id}(...)' on the right of '~'")
        return
    if name.id in FUNCTIONS:
        b.error(f"the function '{name.id}' is used as a value", name.span,
                hint=f"call it: {name.id}(...)")
        return
    b.error(f"undefined name '{name.id}'", name.span, did_you_mean(name.id, names))


def _check_callee(call: Any, is_dist_position: bool, names: set[str], b: _Builder) -> None:
    func = call.func.id
    if func in DISTRIBUTIONS:
        if not is_dist_position:
            b.error(f"the distribution '{func}' cannot be used as a value", call.func.span,
                    f"a distribution is the whole right side of '~': draw a variable "
                    f"(z ~ {func}(...)) and use it; for a log-density term, use 'factor'")
        return
    if is_dist_position and func not in DISTRIBUTIONS:
        hint = _suggest(known_distribution(func)) or did_you_mean(func, set(DISTRIBUTIONS))
        b.error(f"unknown distribution '{func}'", call.func.span,
                hint or "distributions are capitalised: Normal, Gamma, Bernoulli, ...")
        return
    if func in FUNCTIONS or func in b.rejected:
        return
    if func in names:
        _check_variable_call(call, b)
        return
    nets = [v.name for v in b.variables.values() if v.role == "net"]
    message = f"unknown function '{func}'"
    if nets:
        message += f"; the model's {'nets are' if len(nets) > 1 else 'net is'} " + \
            ", ".join(nets)
    b.error(message, call.func.span,
            _suggest(known_function(func)) or
            did_you_mean(func, set(FUNCTIONS) | set(DISTRIBUTIONS) | set(nets)) or
            _suggest(known_distribution(func)))


def _suggest(name: str | None) -> str | None:
    """The hint for a name another language gives a known distribution or function."""
    return f"did you mean '{name}'?" if name else None


def _check_variable_call(call: n.Call, b: _Builder) -> None:
    """Only nets can be called among the user's names (compiler.passes.nets.SUPPORTED kinds)."""
    v = b.variables[call.func.id]
    if v.role == "net":
        if v.decl.kind.id not in SUPPORTED:
            b.error(f"calling the net '{v.name}' ({v.decl.kind.id}) is not supported yet",
                    call.func.span, f"supported now: {', '.join(SUPPORTED)}")
        elif len(call.args) != 1 or call.kwargs:
            b.error(f"the net '{v.name}' takes one argument, its input", call.span)
    else:
        b.error(f"'{v.name}' is not a function and cannot be called", call.func.span,
                f"to index it, use square brackets: {v.name}[...]")


# ---- roles ----------------------------------------------------------------------------


def _assign_roles(b: _Builder) -> None:
    """Data drawn with '~' is observed; a name with an '=' is deterministic, and its '~'
    statements observe it, which rule 13 allows only for transformed data."""
    observations: dict[str, list[Statement]] = {}
    for v in b.variables.values():
        if not v.defs:
            continue
        defs = [b.statements[i] for i in v.defs]
        assigns = [s for s in defs if s.kind == "assign"]
        if v.role == "data":
            if assigns:
                _data_assigned(v, assigns[0], b)
            v.role = "observed"
        elif assigns:
            v.role = "deterministic"
            v.defs = [s.id for s in assigns]
            observations[v.name] = [s for s in defs if s.kind == "sample"]
    _mark_transformed_data(b)
    for name, samples in observations.items():
        v = b.variables[name]
        if samples and v.role == "deterministic":
            first = b.statements[v.defs[0]]
            b.error(f"'{name}' is computed by '=' from latent variables, so it cannot also "
                    "be drawn with '~'", samples[0].node.target.name.span,
                    "a variable is either random ('~') or computed ('='); to add noise "
                    f"around it, draw a new variable: {name}_obs ~ Normal({name}, sigma)",
                    (Note("computed here", first.node.target.name.span),))


def _data_assigned(v: Variable, stmt: Statement, b: _Builder) -> None:
    """Rule 13: data may be defined by `=` only as NET(latent) with an invertible net (a
    flow, checked by compiler/passes/flows.py); other nets make implicit models."""
    value = stmt.node.value
    if isinstance(value, n.Call) and value.func.id in b.variables and \
            b.variables[value.func.id].role == "net":
        kind = b.variables[value.func.id].decl.kind.id
        if kind in INVERTIBLE or kind == "MLP":  # a flow, or an implicit model (a GAN)
            return
        b.error(f"'{v.name}' is data defined through the net '{value.func.id}' ({kind}); "
                "only an invertible net (a flow) or an MLP (an implicit model) can define "
                "data", stmt.node.target.name.span)
        return
    b.error(f"defining the data '{v.name}' by '=' is not supported yet",
            stmt.node.target.name.span,
            "'=' onto data is for flows and implicit models (data = NET(latents)), which "
            "arrive with a later version; to transform data, give the result a new name")


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


def _fold_consts(b: _Builder) -> None:
    for v in b.variables.values():
        if v.role != "const":
            continue
        for name in free_names(v.decl.value):
            if b.variables[name.id].role != "const":
                b.error(f"const '{v.name}' reads '{name.id}', which is not a constant",
                        name.span, f"a const is built from literals and other consts (rule "
                                   f"22); where a size is needed, use '{name.id}' directly")
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
