"""Symbolic sizes: integer polynomials over int data (and folded consts).

Loop ranges, declared dims and slice bounds are sizes. They are compared symbolically at
compile time (`N - 1 + 1` is `N`) and turned into Python code that the generated module
evaluates once the data is loaded. Anything but + - * of integers and int data is
rejected: a size never depends on a latent (rule 12).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dsl import nodes as n
from dsl.diagnostics import Diagnostic
from dsl.printer import format_expr

if TYPE_CHECKING:
    from compiler.ir import GraphicalModel

Monomial = tuple[str, ...]  # sorted names; () is the constant term


class NotASize(Exception):
    """The expression cannot be a size; the message says why."""

    def __init__(self, message: str, node: Any):
        super().__init__(message)
        self.node = node


@dataclass(frozen=True)
class Size:
    terms: tuple[tuple[Monomial, int], ...]  # sorted, no zero coefficients
    # The source expression when it names a const (`L + 1`): generated code and messages
    # show the model's names, not the folded number. Not part of the value: `L + 1`
    # equals 3, and arithmetic on sizes drops it (a derived size shows its number).
    written: Any = field(default=None, compare=False, repr=False)

    @staticmethod
    def of(terms: dict[Monomial, int]) -> Size:
        return Size(tuple(sorted((m, c) for m, c in terms.items() if c != 0)))

    @staticmethod
    def const(value: int) -> Size:
        return Size.of({(): value})

    @staticmethod
    def name(name: str) -> Size:
        return Size.of({(name,): 1})

    def _dict(self) -> dict[Monomial, int]:
        return dict(self.terms)

    def __add__(self, other: Size) -> Size:
        d = self._dict()
        for m, c in other.terms:
            d[m] = d.get(m, 0) + c
        return Size.of(d)

    def __neg__(self) -> Size:
        return Size.of({m: -c for m, c in self.terms})

    def __sub__(self, other: Size) -> Size:
        return self + (-other)

    def __mul__(self, other: Size) -> Size:
        d: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2))
                d[m] = d.get(m, 0) + c1 * c2
        return Size.of(d)

    @property
    def constant(self) -> int | None:
        """The value if the size has no symbolic part."""
        if not self.terms:
            return 0
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return None

    def names(self) -> set[str]:
        return {name for m, _ in self.terms for name in m}

    def __str__(self) -> str:
        # `x__max`, the end of the ragged loops `for t in 1..x[n]`, reads as max(x)
        return self.code(lambda s: f"max({s[:-5]})" if s.endswith("__max") else s,
                         written=True)

    def code(self, name_code: Any, written: bool = False) -> str:
        """Python source for this size, with `name_code(name)` for each data name; with
        `written`, as the model wrote it when it names a const (`name_code` then also maps
        the const's name, which the code must define)."""
        if written and self.written is not None:
            return _written_code(self.written, name_code)
        if not self.terms:
            return "0"
        parts: list[str] = []
        for m, c in sorted(self.terms, key=lambda t: (-len(t[0]), t[0])):
            factors = [name_code(x) for x in m]
            body = " * ".join(factors) if factors else str(abs(c))
            if factors and abs(c) != 1:
                body = f"{abs(c)} * {body}"
            sign = "-" if c < 0 else "+"
            parts.append(f"{sign} {body}" if parts else (f"-{body}" if c < 0 else body))
        return " ".join(parts)


Dim = Size


def size_of(e: Any, ints: dict[str, Any]) -> Size:
    """The size an expression denotes. `ints` maps each allowed name to an int value
    (a folded const) or None (int data, known only when data is loaded)."""
    size = _size_of(e, ints)
    if any(isinstance(x, n.Name) and ints.get(x.id) is not None for x in _leaves(e)):
        return replace(size, written=e)
    return size


def _leaves(e: Any) -> list[Any]:
    if isinstance(e, n.Unary):
        return _leaves(e.operand)
    if isinstance(e, n.Binary):
        return _leaves(e.left) + _leaves(e.right)
    return [e]


_TIGHTNESS = {"+": 1, "-": 1, "*": 2}


def _written_code(e: Any, name_code: Any) -> str:
    """Python source of a size expression of integers, names, unary minus and + - *
    (the only forms `size_of` accepts), parenthesised where Python needs it."""
    if isinstance(e, n.Number):
        return str(e.value)
    if isinstance(e, n.Name):
        return str(name_code(e.id))
    if isinstance(e, n.Unary):
        inner = _written_code(e.operand, name_code)
        return f"-({inner})" if isinstance(e.operand, (n.Binary, n.Unary)) else f"-{inner}"
    left, right = _written_code(e.left, name_code), _written_code(e.right, name_code)
    if isinstance(e.left, n.Binary) and _TIGHTNESS[e.left.op] < _TIGHTNESS[e.op]:
        left = f"({left})"
    if isinstance(e.right, n.Binary) and (_TIGHTNESS[e.right.op] < _TIGHTNESS[e.op] or
                                          (e.op == "-" and e.right.op in "+-")):
        right = f"({right})"
    return f"{left} {e.op} {right}"


def _size_of(e: Any, ints: dict[str, Any]) -> Size:
    if isinstance(e, n.Number):
        if not isinstance(e.value, int):
            raise NotASize("a size must be an integer, not a real number", e)
        return Size.const(e.value)
    if isinstance(e, n.Name):
        if e.id not in ints:
            raise NotASize(f"'{e.id}' cannot be used in a size: sizes are built from "
                           "integers, int data and consts", e)
        value = ints[e.id]
        if value is None:
            return Size.name(e.id)
        if not isinstance(value, int):
            raise NotASize(f"const '{e.id}' = {value} is not an integer", e)
        return Size.const(value)
    if isinstance(e, n.Unary):
        return -_size_of(e.operand, ints)
    if isinstance(e, n.Binary) and e.op in "+-*":
        a, b = _size_of(e.left, ints), _size_of(e.right, ints)
        return a + b if e.op == "+" else a - b if e.op == "-" else a * b
    raise NotASize(f"'{format_expr(e)}' cannot be a size: use integers, int data and + - *",
                   e)


def range_length(lo: Size, hi: Size) -> Size:
    """Number of integers in lo..hi (inclusive)."""
    return hi - lo + Size.const(1)


def dim_text(dim: Size | int) -> str:
    return str(dim)


def shape_text(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def size_diagnostic(exc: NotASize, variables: dict[str, Any]) -> Diagnostic:
    """Say why a name cannot be in a size in terms of what the name is (rule 12)."""
    node = exc.node
    span = getattr(node, "span", None)
    fixed = "sizes (loop bounds, dimensions, slice bounds) are fixed when the data is loaded"
    if not isinstance(node, n.Name):
        return Diagnostic(str(exc), span)
    v = variables.get(node.id)
    if v is None:
        return Diagnostic(f"a size that depends on the loop variable '{node.id}' is not "
                          "supported yet", span,
                          "loop ranges and slices have fixed sizes; triangular loops arrive "
                          "with a later version")
    if v.role in ("latent", "deterministic", "param"):
        role = {"latent": "a latent variable", "deterministic": "computed from latents",
                "param": "a point parameter"}[v.role]
        return Diagnostic(f"a size cannot depend on '{v.name}', which is {role}", span,
                          f"{fixed}: use int data or a const")
    if v.role in ("data", "observed") and v.declared_type is not None:
        t = v.declared_type
        if t.base != "int":
            return Diagnostic(f"'{v.name}' is {t.base} data, but a size must be an integer",
                              span, f"declare it 'data {v.name}: int'")
        return Diagnostic(f"'{v.name}' is an array, but a size must be one integer", span)
    if v.role == "transformed_data":
        return Diagnostic(f"a size cannot depend on '{v.name}', which is computed by '='",
                          span, f"{fixed}: use int data or a const")
    return Diagnostic(str(exc), span)


def int_env(model: GraphicalModel) -> dict[str, Any]:
    """Names allowed in sizes: int scalar data (value unknown) and integer consts."""
    env: dict[str, Any] = {}
    for v in model.variables.values():
        if v.role in ("data", "observed") and v.declared_type is not None \
                and v.declared_type.base == "int" and not v.declared_type.dims:
            env[v.name] = None
        elif v.role == "const" and isinstance(v.value, int):
            env[v.name] = v.value
    for ragged in getattr(model, "ragged_loops", {}).values():  # x__max of `for t in 1..x[n]`
        env[ragged.size] = None
    return env
