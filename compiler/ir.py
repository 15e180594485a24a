"""The graphical-model IR: variables, statements flattened with their loops, and the
dependency graph as a networkx DiGraph.

Passes fill in what they own (roles by resolve, shapes by shapes, supports by supports,
loop kinds by loops) and never rebuild the syntax tree; the code generator reads only
this IR. `validate()` states the invariants tests rely on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from dsl import nodes as n
from dsl.diagnostics import InternalError
from dsl.spans import Source, Span

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
    support: Any = None  # compiler.supports.Support
    discrete: bool = False  # integer-valued: a discrete latent, or '=' of integers
    value: Any = None  # consts: the folded Python value


@dataclass
class GraphicalModel:
    name: str
    source: Source
    program: n.Program
    variables: dict[str, Variable]
    statements: list[Statement]
    loops: dict[int, Loop]
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)
    loop_kinds: dict[int, str] = field(default_factory=dict)
    # compiler/folding.py: id of a constant expression node -> its value
    folded: dict[int, Any] = field(default_factory=dict)
    # compiler/ranges.py: index and loop-range rules checked once the data is loaded
    range_rules: dict[tuple[object, ...], Any] = field(default_factory=dict)

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
