"""What every writer of the generated module shares: the model, the Python names of its
variables, the emitter lines go to, which generated function is being written (a sampler
or not) and what that function has stored so far. Each part of the module (module.py
lists them) is written by plain functions of this one object, so they need no common
base class and none keeps state of its own."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compiler.codegen.emitter import Emitter, tuple_code
from compiler.codegen.exprs import ExprCompiler, Scope
from compiler.ir import GraphicalModel, Statement
from compiler.sizes import int_env
from compiler.tables.names import python_names


@dataclass
class FunctionStorage:
    """How the generated function being written stores the variables its statements define
    (storage.py fills it; storage.begin_function starts it afresh for each function)."""
    step_by_step: set[str] = field(default_factory=set)  # stored step by step (rt.Steps)
    # the position of the step index among each such variable's indices: 0 for `y[t]`,
    # 1 for `y[n, t]` (a chain per element of the plate n, whose loop is vectorised)
    step_dim: dict[str, int] = field(default_factory=dict)
    statements_left: dict[str, int] = field(default_factory=dict)  # still to define each
    parts_started: set[str] = field(default_factory=set)  # assembled in parts (rt.Parts)
    completed: set[str] = field(default_factory=set)  # steps stacked, or parts built
    in_step_loop: bool = False  # writing the body of a step-by-step loop
    after_step_loop: list[tuple[str, Any]] = field(default_factory=list)  # stacks for then


class ModuleContext:
    """One generated class being written: the model (or guide) it is for, and the state
    of the function being written inside it."""

    def __init__(self, model: GraphicalModel, guide_of: GraphicalModel | None = None):
        self.model = model
        self.guide_of = guide_of  # the model this is the guide of
        self.ints = int_env(model)
        loop_vars = {lp.var for lp in model.loops.values()}
        self.names = python_names(set(model.variables) | loop_vars)
        # `x__max` of a ragged loop `for t in 1..x[n]`: no user name contains `__`
        self.names.update({r.size: r.size for r in model.ragged_loops.values()})
        self.out = Emitter()
        self.file = model.source.path.rsplit("/", 1)[-1]
        self.sampling = False  # writing a sampler: values are drawn, not scored
        self.drawing_guide = False  # writing the guide's sampler (draws add log q)
        self.storage = FunctionStorage()

    def where(self, span: Any) -> str:
        return f"{self.file}:{span.line}"

    def exprs(self, reader: Any = None) -> ExprCompiler:
        return ExprCompiler(self.model, self.names, self.ints, reader)

    def scope(self, stmt: Statement, sequential: Any = None) -> Scope:
        """The loops around a statement; with `sequential`, that loop runs step by step
        (its variable is a Python int) and the others are vectorised."""
        scopes = tuple(self.model.scopes[lp.id] for lp in stmt.loops)
        if sequential is None:
            return Scope(scopes)
        seq = tuple(s for s in scopes if s.key == sequential.id)
        return Scope(tuple(s for s in scopes if s.key != sequential.id),
                     {seq[0].var: self.names[seq[0].var]}, seq)

    def shape_code(self, shape: Any) -> str:
        return tuple_code([self.exprs().size(d) for d in shape or ()])

    def unpack_sizes(self) -> None:
        """The int data sizes the source does not fix, as locals, and the int consts
        sizes are written with (`L + 1`), each left out where nothing reads it."""
        for name, value in self.ints.items():
            if value is None:
                self.out.line(f"{self.names[name]} = data__[{name!r}]")
        self.unpack_consts()

    def unpack_consts(self) -> None:
        for name, value in self.ints.items():
            if isinstance(value, int) and name in self.names:
                self.out.binding(self.names[name], f"{self.names[name]} = {value!r}")

    def unpack_data(self) -> None:
        """Data as locals; in samplers observed data may be absent (it is simulated), and
        so may transformed data computed from it."""
        for v in self.model.of_role("data", "observed", "transformed_data"):
            get = f".get({v.name!r})" if self.sampling and v.role != "data" else \
                f"[{v.name!r}]"
            self.out.binding(self.names[v.name], f"{self.names[v.name]} = data__{get}")
        for r in sorted({r.size for r in self.model.ragged_loops.values()}):
            self.out.binding(r, f"{r} = data__[{r!r}]")  # the largest end of a ragged loop
        self.unpack_consts()
