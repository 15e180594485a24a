"""The graphical-model IR: variables, statements flattened with their loops, and the
dependency graph as a networkx DiGraph.

Passes fill in what they own (roles by resolve, shapes by shapes, supports by supports,
loop kinds by loops) and never rebuild the syntax tree; the code generator reads only
this IR. `validate()` states the invariants tests rely on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from dsl import nodes as n
from dsl.diagnostics import Diagnostic, InternalError
from dsl.spans import Source, Span

if TYPE_CHECKING:  # the passes' result types; they import this module
    from compiler.indexing import LoopScope
    from compiler.passes.diffusion import DiffusionCall
    from compiler.passes.elimination import Enumerated
    from compiler.passes.expr_types import Binding, ExprType
    from compiler.passes.flows import Flow
    from compiler.passes.supports import Support

ROLES = ("data", "observed", "latent", "deterministic", "transformed_data", "param", "net",
         "const")


@dataclass(frozen=True)
class Loop:
    """One `for` loop of the model; statements list the loops around them, outer first."""

    id: int
    var: str
    range: n.Range
    span: Span


@dataclass(frozen=True)
class Statement:
    """A `~`, `=` or `factor` statement with the loops around it."""

    id: int
    kind: str  # "sample" | "assign" | "factor"
    node: Any  # n.Sample | n.Assign | n.Factor
    loops: tuple[Loop, ...]
    target: str | None
    reads: frozenset[str]

    @property
    def span(self) -> Span:
        return self.node.span

    @property
    def expr(self) -> Any:
        """The distribution call, the assigned value, or the factor's expression."""
        if self.kind == "sample":
            return self.node.dist
        return self.node.value if self.kind == "assign" else self.node.expr


@dataclass
class Variable:
    """A named quantity of the model and everything the passes learn about it."""

    name: str
    role: str
    span: Span
    decl: Any = None  # DataDecl | ParamDecl | ConstDecl | NetDecl | None
    defs: list[int] = field(default_factory=list)  # defining statement ids
    declared_type: n.Type | None = None
    shape: tuple[Any, ...] | None = None  # dims: int or compiler.sizes.Size
    support: Any = None  # compiler.passes.supports.Support
    discrete: bool = False  # integer-valued: a discrete latent, or '=' of integers
    value: Any = None  # consts: the folded Python value


@dataclass
class GraphicalModel:
    """The model every pass reads and the results each pass adds, declared here with
    their types and the pass that fills them (in pipeline order). A field is empty until
    its pass has run; after `analyse` every one is final and the code generator, the
    teaching tools and the application layer only read them."""

    name: str
    source: Source
    program: n.Program
    variables: dict[str, Variable]
    statements: list[Statement]
    loops: dict[int, Loop]
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    # compiler/passes/shapes.py: the type of every expression (by id of its node), the
    # distribution bound by each `~` (by statement id), the index ranges of each loop
    # and generator (by loop id, or id of the generator node)
    types: dict[int, ExprType] = field(default_factory=dict)
    bindings: dict[int, Binding] = field(default_factory=dict)
    scopes: dict[int, LoopScope] = field(default_factory=dict)
    # compiler/passes/ragged.py (during shapes): loops ending at x[i] (ragged), by loop id
    ragged_loops: dict[int, Any] = field(default_factory=dict)
    # compiler/passes/diffusion.py (during shapes): statement id -> its Diffusion(...) call
    diffusions: dict[int, DiffusionCall] = field(default_factory=dict)
    # compiler/passes/flows.py: flow-defined data, by variable name
    flows: dict[str, Flow] = field(default_factory=dict)
    # compiler/passes/loops.py: loop kinds, the loops that must run step by step (in the log
    # density; when sampling), and the variables each chain loop reads at a lag
    loop_kinds: dict[int, str] = field(default_factory=dict)
    sequential_logp: set[int] = field(default_factory=set)
    sequential_sample: set[int] = field(default_factory=set)
    lagged_reads: dict[int, set[str]] = field(default_factory=dict)
    # compiler/passes/supports.py: each unknown's support, the names its bounds read, and the
    # latents some likelihood reaches
    supports: dict[str, Support] = field(default_factory=dict)
    bound_reads: dict[str, set[str]] = field(default_factory=dict)
    likelihood_latents: set[str] = field(default_factory=set)
    # compiler/passes/folding.py: id of a constant expression node -> its value
    folded: dict[int, Any] = field(default_factory=dict)
    # compiler/passes/ranges.py: index and loop-range rules checked once the data is loaded
    range_rules: dict[tuple[object, ...], Any] = field(default_factory=dict)
    # compiler/passes/elimination.py: the discrete latents summed out, by name
    enumerated: dict[str, Enumerated] = field(default_factory=dict)
    # compiler/pipeline.py: the analysed `guide:` block, when the file has one
    guide: GraphicalModel | None = None
    # compiler/passes/identifiability.py: warnings a user should see before fitting
    warnings: list[Diagnostic] = field(default_factory=list)

    def of_role(self, *roles: str) -> list[Variable]:
        return [v for v in self.variables.values() if v.role in roles]

    def defining(self, name: str) -> list[Statement]:
        return [self.statements[i] for i in self.variables[name].defs]

    def validate(self) -> None:
        """Invariants every pass leaves true; a failure is a bug in bgmc."""
        for v in self.variables.values():
            if v.role not in ROLES:
                raise InternalError(f"variable {v.name} has unknown role {v.role}")
            for i in v.defs:
                if self.statements[i].target != v.name:
                    raise InternalError(f"statement {i} does not define {v.name}")
        for name in self.graph.nodes:
            if name in self.variables and self.graph.nodes[name]["role"] != \
                    self.variables[name].role:
                raise InternalError(f"graph and variables disagree on {name}")
        if not nx.is_directed_acyclic_graph(self.graph.subgraph(
                [v for v, d in self.graph.nodes(data=True) if d.get("kind") != "factor"])):
            pass  # lagged self-dependencies (chains) are legal; cycles are checked by checks.py
