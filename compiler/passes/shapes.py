"""Shape inference: the shape of every variable and every expression, with symbolic sizes.

Contract: after `infer_shapes(model)`, every variable has `shape` (a tuple of Size),
`model.types[id(expr)]` holds the element type of every expression in a statement, and
`model.bindings[stmt.id]` the bound parameterisation of every distribution (and the
bounds of latents' declared types), and `Variable.discrete` says which are integer-valued;
mistakes (wrong arity, unknown keyword, too many indices, constant index out of range,
rank or constant-size mismatch, sizes that are not fixed) are raised together as one
BgmError. Defined variables' shapes are settled by a fixpoint (see
compiler/passes/shape_fixpoint.py), and a variable whose shape failed is reported once, never
again through its readers.

This module is the pass's driver: the context the other parts share (the model, the int
sizes, the errors collected), the loops' scopes, the declared shapes, and the typing of
each statement against its target. The parts it drives live apart so each can be read
alone, beside this module: shape_rules.py (the shared rules and errors), shape_fixpoint.py
(defined variables' shapes), expr_types.py (expressions) and distribution_types.py
(distribution calls).
"""
from __future__ import annotations

from typing import Any

import networkx as nx

from compiler.indexing import LoopScope
from compiler.ir import GraphicalModel, Loop, Statement, Variable
from compiler.passes.distribution_types import bind_distribution
from compiler.passes.expr_types import ExprTyper
from compiler.passes.ragged import ragged_bound
from compiler.passes.shape_fixpoint import ShapeFixpoint
from compiler.passes.shape_rules import (
    ONE,
    Shape,
    ShapeError,
    UnknownShape,
    check_fits,
    check_range,
    size_error,
    type_shape,
)
from compiler.sizes import NotASize, int_env, size_diagnostic, size_of
from compiler.tables.distributions import DISTRIBUTIONS
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, InternalError, Note


def infer_shapes(model: GraphicalModel) -> None:
    ctx = ShapeContext(model)
    ctx.run()
    if ctx.errors:
        raise BgmError(ctx.errors, model.source)


def _loop_end(model: GraphicalModel, loop: Loop, ints: dict[str, Any]) -> Any:
    """A loop's upper bound as a size; a ragged end `x[n]` is the largest x."""
    try:
        return size_of(loop.range.hi, ints)
    except NotASize:
        ragged = ragged_bound(model, loop, ints)
        if ragged is None:
            raise
        return ragged


class ShapeContext:
    """What the parts of the pass share while it runs over one model: the model, its int
    sizes, the errors collected and the reads skipped; and the typing of statements."""

    def __init__(self, model: GraphicalModel):
        self.model = model
        self.ints = int_env(model)
        self.errors: list[Diagnostic] = []
        self.unknown: list[n.Name] = []  # reads of variables whose shape failed (no cascade)
        self.generator_keys = 0  # negative LoopScope keys handed to generator variables
        model.types = {}
        model.bindings = {}
        model.diffusions = {}  # compiler/passes/diffusion.py
        model.scopes = {}

    def fail(self, exc: ShapeError | NotASize) -> None:
        if isinstance(exc, NotASize):
            self.errors.append(size_diagnostic(exc, self.model.variables))
        else:
            self.errors.append(exc.diagnostic)

    # ---- driver
    def run(self) -> None:
        for loop in self.model.loops.values():
            try:
                lo = size_of(loop.range.lo, self.ints)
                hi = _loop_end(self.model, loop, self.ints)
            except NotASize as exc:
                self.fail(exc)
                lo = hi = ONE
            self.model.scopes[loop.id] = LoopScope(loop.id, loop.var, lo, hi)
            try:
                check_range(lo, hi, loop.range, self.model.range_rules)
            except ShapeError as exc:
                self.fail(exc)
        self._sizes_not_drawn()
        for v in self.model.variables.values():
            if v.decl is not None and v.role in ("data", "observed", "param"):
                self._declared_shape(v)
            elif v.role in ("const", "net"):
                v.shape = ()
        if self.errors:
            return
        ShapeFixpoint(self).run()
        for stmt in self.model.statements:
            if stmt.target is None or self.model.variables[stmt.target].role in (
                    "observed", "transformed_data"):
                self._checked(stmt)
            else:
                self._target_in_range(stmt)
        for v in self.model.of_role("param"):
            self._param_bounds(v)
        if self.unknown and not self.errors:
            raise InternalError(f"no shape for '{self.unknown[0].id}' and no error reported")

    def _sizes_not_drawn(self) -> None:
        """Int data that gives a size (a loop's range, a declared dimension) is fixed by
        the data: drawing it too would make shapes random."""
        sizes: set[str] = set()
        for scope in self.model.scopes.values():
            sizes |= scope.lo.names() | scope.hi.names()
        types = [v.declared_type for v in self.model.variables.values()]
        types += [getattr(s.node, "type", None) for s in self.model.statements]
        for t in types:
            for d in getattr(t, "dims", None) or ():
                try:
                    sizes |= size_of(d, self.ints).names()
                except NotASize:
                    pass
        for stmt in self.model.statements:
            if stmt.kind == "sample" and stmt.target in sizes:
                self.errors.append(Diagnostic(
                    f"'{stmt.target}' is a size; modelling it with '~' is not supported yet",
                    stmt.node.target.span,
                    "a size comes from the data and fixes the model's shapes; draw another "
                    "variable, or observe a copy of it"))

    def _target_in_range(self, stmt: Statement) -> None:
        """The elements a statement defines lie inside its variable's shape: `t[j]` for j
        in 0..N would otherwise define t[N] through Python's index -1."""
        v = self.model.variables[stmt.target]  # type: ignore[index]
        if v.shape is None:
            return
        try:
            ExprTyper(self, self.scopes_of(stmt)).index(v.name, v.shape, stmt.node.target.items,
                                                    stmt.node.target)
        except ShapeError as exc:
            self.fail(exc)
        except UnknownShape as exc:
            self.unknown.append(exc.name)

    def _checked(self, stmt: Statement) -> None:
        """Type a statement whose target's shape is settled, reporting what is wrong."""
        try:
            self.statement(stmt)
        except UnknownShape as exc:
            self.unknown.append(exc.name)
        except ShapeError as exc:
            self.fail(exc)

    def order(self) -> list[str]:
        g = nx.DiGraph()
        g.add_nodes_from(self.model.variables)
        for stmt in self.model.statements:
            if stmt.target is not None:
                g.add_edges_from((r, stmt.target) for r in stmt.reads if r != stmt.target)
        try:
            return list(nx.lexicographical_topological_sort(g))
        except nx.NetworkXUnfeasible:
            return list(self.model.variables)  # cycles are reported by checks.py

    def scopes_of(self, stmt: Statement) -> tuple[LoopScope, ...]:
        return tuple(self.model.scopes[loop.id] for loop in stmt.loops)

    # ---- variables
    def _declared_shape(self, v: Variable) -> None:
        try:
            v.shape = type_shape(v.declared_type, self.ints)
        except NotASize as exc:
            self.fail(exc)
            v.shape = ()

    def _param_bounds(self, v: Variable) -> None:
        """The bounds of a point parameter's declared type (rule 5: they may read data,
        consts and other unknowns) are typed and must fit its shape."""
        t = v.declared_type
        if t is None or v.shape is None:
            return
        ex = ExprTyper(self, ())
        for bound in (t.lower, t.upper):
            if bound is None:
                continue
            try:
                check_fits(ex.type(bound).shape, v.shape, bound, "the bound",
                            n.Target(v.decl.name, (), span=v.decl.name.span))
            except UnknownShape as exc:
                self.unknown.append(exc.name)
            except ShapeError as exc:
                self.fail(exc)

    def statements_of(self, v: Variable) -> list[Statement]:
        return [self.model.statements[i] for i in v.defs]

    # ---- statements
    def statement(self, stmt: Statement, provisional: bool = False) -> Shape:
        """The element shape a statement defines (and all its expression types); with
        `provisional`, the target's current shape is a guess and is not checked."""
        scopes = self.scopes_of(stmt)
        ex = ExprTyper(self, scopes)
        if stmt.kind == "factor":
            try:
                ex.type(stmt.node.expr)
            except ShapeError as exc:
                self.fail(exc)
            return ()
        target_type = None if provisional else self._target_type(stmt, ex)
        if provisional:
            for item in stmt.node.target.items:
                if not isinstance(item, (n.Slice, n.FullSlice)):
                    ex.type(item)
        if stmt.kind == "assign":
            value = ex.type(stmt.node.value)
            if provisional:  # integer-valued only if every definition is
                v = self.model.variables[stmt.target]  # type: ignore[index]
                v.discrete = value.integer and (stmt.id == v.defs[0] or v.discrete)
            if target_type is not None:
                check_fits(value.shape, target_type, stmt.node.value, "the value",
                            stmt.node.target)
            return value.shape
        binding = bind_distribution(ex, stmt.node.dist, stmt)
        self.model.bindings[stmt.id] = binding
        v = self.model.variables[stmt.target]  # type: ignore[index]
        if provisional:  # a discrete latent is integer-valued (it may index: mu[z[i]])
            v.discrete = DISTRIBUTIONS[binding.name].discrete
        if target_type is not None:
            check_fits(binding.shape, target_type, stmt.node.dist,
                        f"a draw of {binding.name}", stmt.node.target, binding.event_rank)
            return target_type
        if stmt.node.type is None:
            return binding.shape
        elem = self._declared(stmt.node.type, stmt.node.target, ex)
        check_fits(binding.shape, elem, stmt.node.dist, f"a draw of {binding.name}",
                    stmt.node.target, binding.event_rank)
        return elem

    def _declared(self, t: n.Type, left: n.Target, ex: ExprTyper) -> Shape:
        """The element shape a latent's declared type gives; its bounds, which may read
        other variables (rule 5), are typed and must fit that shape."""
        try:
            elem = type_shape(t, self.ints)
        except NotASize as exc:
            raise size_error(exc, self.model) from None
        for bound in (t.lower, t.upper):
            if bound is not None:
                check_fits(ex.type(bound).shape, elem, bound, "the bound", left)
        return elem

    def _target_type(self, stmt: Statement, ex: ExprTyper) -> Shape:
        """The element shape of the target, whose variable's shape is known. A `~` on
        transformed data observes elements the `=` statements define (rule 13); one
        reaching past them is the mistake of defining a variable both ways."""
        v = self.model.variables[stmt.target]  # type: ignore[index]
        target = stmt.node.target
        try:
            return ex.index(v.name, v.shape or (), target.items, target).shape
        except ShapeError:
            if stmt.kind != "sample" or v.role != "transformed_data":
                raise
        first = self.model.statements[v.defs[0]].node.target
        raise ShapeError(f"'{v.name}' is defined by '=' for some elements and by '~' for "
                         "others", target.name,
                         "a variable is either random ('~') or computed ('='); give the "
                         "'=' part its own name",
                         (Note("'=' defines it here", first.name.span),))
