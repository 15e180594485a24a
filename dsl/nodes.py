"""The .bgm syntax tree: small frozen dataclasses with a span and no behaviour.

Spans are excluded from equality (`field(compare=False)`), so two trees are equal when
they say the same thing; `parse(print(tree)) == tree` is the printer's contract.
Comments live on statements (leading lines and a trailing comment) so `bgmc fmt` keeps them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dsl.spans import Span

_NOWHERE = Span(0, 0, 0, 0)


def _span() -> Span:
    return field(default=_NOWHERE, compare=False, repr=False, kw_only=True)  # type: ignore[return-value]


# ---- expressions -----------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """An int or real literal; `value`'s Python type records which.

    Equality compares that type too: Python says `2 == 2.0`, but `const K = 2` (a size)
    and `const K = 2.0` (a real) are different programs, and the printer's round-trip
    contract must be able to tell them apart.
    """

    value: int | float
    span: Span = _span()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Number):
            return NotImplemented
        return type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True)
class String:
    """A string literal, allowed only as a keyword argument's value (rule 2)."""

    value: str
    span: Span = _span()


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = _span()


@dataclass(frozen=True)
class Unary:
    op: str  # only "-"
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / @ ^
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >=
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    """`f(a, b, k=v)`: a built-in function, a distribution, or a net."""

    func: Name
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class Range:
    """`lo..hi`, inclusive, empty when hi < lo."""

    lo: Expr
    hi: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Generator:
    """`sum(body for var in lo..hi)`: the sole argument of a reduction (rule 17)."""

    func: Name
    body: Expr
    var: Name
    range: Range
    span: Span = _span()


@dataclass(frozen=True)
class Slice:
    """`x[a..b]` inside an index."""

    range: Range
    span: Span = _span()


@dataclass(frozen=True)
class FullSlice:
    """`x[:, d]`: every element along one dimension."""

    span: Span = _span()




@dataclass(frozen=True)
class Index:
    """`x[i, j]`; `x[i][j]` stays nested in the tree and means the same (rule 16)."""

    base: Expr
    items: tuple[IndexItem, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Vector:
    """`[a, b, c]`."""

    items: tuple[Expr, ...]
    span: Span = _span()


Expr = Number | String | Name | Unary | Binary | Compare | Call | Generator | Index | Vector
IndexItem = Expr | Slice | FullSlice

# ---- types ------------------------------------------------------------------------


@dataclass(frozen=True)
class Type:
    """`real<lower=a, upper=b>[N, D]`, `simplex[K]`, `positive`, ..."""

    base: str
    lower: Expr | None = None
    upper: Expr | None = None
    dims: tuple[Expr, ...] = ()
    span: Span = _span()


# ---- statements ---------------------------------------------------------------------


def _comments() -> tuple[str, ...]:
    return field(default=(), kw_only=True)  # type: ignore[return-value]


def _trailing() -> str | None:
    return field(default=None, kw_only=True)  # type: ignore[return-value]


def _blank() -> bool:
    return field(default=False, compare=False, kw_only=True)  # type: ignore[return-value]


@dataclass(frozen=True)
class Target:
    """The left side of `~` or `=`: a name and its (flattened) indices."""

    name: Name
    items: tuple[IndexItem, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class DataDecl:
    name: Name
    type: Type
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class ParamDecl:
    name: Name
    type: Type
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class ConstDecl:
    name: Name
    value: Expr
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class NetDecl:
    name: Name
    kind: Name
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Keyword, ...] = ()
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class Sample:
    """`target [: type] ~ Dist(...)`."""

    target: Target
    type: Type | None
    dist: Expr
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class Assign:
    """`target = expr`: a deterministic node (or transformed data)."""

    target: Target
    value: Expr
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class Factor:
    """`factor expr`: an arbitrary term of the log joint density (Stan's `target +=`)."""

    expr: Expr
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()


@dataclass(frozen=True)
class For:
    var: Name
    range: Range
    body: tuple[Stmt, ...]
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()
    end_comments: tuple[str, ...] = _comments()


@dataclass(frozen=True)
class Guide:
    body: tuple[Stmt, ...]
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    blank_before: bool = _blank()
    end_comments: tuple[str, ...] = _comments()


Stmt = DataDecl | ParamDecl | ConstDecl | NetDecl | Sample | Assign | Factor | For | Guide


@dataclass(frozen=True)
class Program:
    """A whole .bgm file: optional `model NAME` header and its statements in order."""

    name: Name | None
    body: tuple[Stmt, ...]
    span: Span = _span()
    comments: tuple[str, ...] = _comments()
    trailing: str | None = _trailing()
    end_comments: tuple[str, ...] = _comments()
