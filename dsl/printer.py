"""Syntax tree → canonical .bgm text (`bgmc fmt`).

One spelling per construct: four-space indentation, spaces around binary operators
except `^` and `..`, the fewest parentheses that keep the tree, comments where the user
wrote them, at most one blank line between statements. Contract: for every tree the
parser produces, parse(print(tree)) == tree (spans aside).
"""
from __future__ import annotations

from typing import Any

from dsl import nodes as n

_INDENT = "    "

# Binding strength of each expression form; higher binds tighter.
_COMPARE, _ADD, _MUL, _UNARY, _POWER, _POSTFIX = 1, 2, 3, 4, 5, 6
_BINARY_LEVEL = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL, "@": _MUL}


def format_program(program: n.Program) -> str:
    """The canonical text of a whole program, ending in one newline."""
    out: list[str] = [f"# {c}".rstrip() for c in program.comments]
    if program.name is not None:
        out.append(_with_trailing(f"model {program.name.id}", program.trailing))
    for i, stmt in enumerate(program.body):
        if out and (stmt.blank_before or (i == 0 and program.name is not None)):
            out.append("")
        _statement(stmt, 0, out)
    out += [f"# {c}".rstrip() for c in program.end_comments]
    return "\n".join(out) + "\n"


def _with_trailing(text: str, trailing: str | None) -> str:
    return f"{text}  # {trailing}".rstrip() if trailing is not None else text


def _statement(stmt: Any, depth: int, out: list[str]) -> None:
    pad = _INDENT * depth
    out += [f"{pad}# {c}".rstrip() for c in stmt.comments]
    if isinstance(stmt, (n.For, n.Guide)):
        head = "guide:" if isinstance(stmt, n.Guide) else \
            f"for {stmt.var.id} in {format_range(stmt.range)}:"
        out.append(pad + _with_trailing(head, stmt.trailing))
        for i, inner in enumerate(stmt.body):
            if i > 0 and inner.blank_before:
                out.append("")
            _statement(inner, depth + 1, out)
        out += [f"{pad}{_INDENT}# {c}".rstrip() for c in stmt.end_comments]
        return
    out.append(pad + _with_trailing(format_simple(stmt), stmt.trailing))


def format_simple(stmt: Any) -> str:
    """One non-block statement on one line, without comments."""
    if isinstance(stmt, n.DataDecl):
        return f"data {stmt.name.id}: {format_type(stmt.type)}"
    if isinstance(stmt, n.ParamDecl):
        return f"param {stmt.name.id}: {format_type(stmt.type)}"
    if isinstance(stmt, n.ConstDecl):
        return f"const {stmt.name.id} = {format_expr(stmt.value)}"
    if isinstance(stmt, n.NetDecl):
        return f"net {stmt.name.id} = {stmt.kind.id}({_arguments(stmt.args, stmt.kwargs)})"
    if isinstance(stmt, n.Sample):
        typed = f": {format_type(stmt.type)}" if stmt.type is not None else ""
        return f"{format_target(stmt.target)}{typed} ~ {format_expr(stmt.dist)}"
    if isinstance(stmt, n.Assign):
        return f"{format_target(stmt.target)} = {format_expr(stmt.value)}"
    if isinstance(stmt, n.Factor):
        return f"factor {format_expr(stmt.expr)}"
    raise TypeError(f"not a simple statement: {type(stmt).__name__}")


def format_target(target: n.Target) -> str:
    if not target.items:
        return target.name.id
    return f"{target.name.id}[{', '.join(_index_item(i) for i in target.items)}]"


def format_type(t: n.Type) -> str:
    bounds = []
    if t.lower is not None:
        bounds.append(f"lower={_at_least(t.lower, _ADD)}")
    if t.upper is not None:
        bounds.append(f"upper={_at_least(t.upper, _ADD)}")
    text = t.base + (f"<{', '.join(bounds)}>" if bounds else "")
    if t.dims:
        text += "[" + ", ".join(_at_least(d, _ADD) for d in t.dims) + "]"
    return text


def format_range(r: n.Range) -> str:
    return f"{_at_least(r.lo, _ADD)}..{_at_least(r.hi, _ADD)}"


def _index_item(item: Any) -> str:
    if isinstance(item, n.Slice):
        return format_range(item.range)
    if isinstance(item, n.FullSlice):
        return ":"
    return format_expr(item)


def _arguments(args: tuple[Any, ...], kwargs: tuple[n.Keyword, ...]) -> str:
    parts = [format_expr(a) for a in args]
    parts += [f"{k.name}={format_expr(k.value)}" for k in kwargs]
    return ", ".join(parts)


def _level(e: Any) -> int:
    if isinstance(e, n.Compare):
        return _COMPARE
    if isinstance(e, n.Binary):
        return _POWER if e.op == "^" else _BINARY_LEVEL[e.op]
    if isinstance(e, n.Unary):
        return _UNARY
    return _POSTFIX


def _at_least(e: Any, level: int) -> str:
    text = format_expr(e)
    return f"({text})" if _level(e) < level else text


def format_expr(e: Any) -> str:
    """An expression with the fewest parentheses that parse back to the same tree."""
    if isinstance(e, n.Number):
        return repr(e.value) if isinstance(e.value, float) else str(e.value)
    if isinstance(e, n.String):
        return f'"{e.value}"'
    if isinstance(e, n.Name):
        return e.id
    if isinstance(e, n.Unary):
        return f"-{_at_least(e.operand, _UNARY)}"
    if isinstance(e, n.Binary):
        return _binary(e)
    if isinstance(e, n.Compare):
        return f"{_at_least(e.left, _ADD)} {e.op} {_at_least(e.right, _ADD)}"
    if isinstance(e, n.Call):
        return f"{e.func.id}({_arguments(e.args, e.kwargs)})"
    if isinstance(e, n.Generator):
        return (f"{e.func.id}({format_expr(e.body)} for {e.var.id} in "
                f"{format_range(e.range)})")
    if isinstance(e, n.Index):
        items = ", ".join(_index_item(i) for i in e.items)
        return f"{_at_least(e.base, _POSTFIX)}[{items}]"
    if isinstance(e, n.Vector):
        return "[" + ", ".join(format_expr(i) for i in e.items) + "]"
    raise TypeError(f"not an expression: {type(e).__name__}")


def _binary(e: n.Binary) -> str:
    if e.op == "^":  # right-associative; base is a postfix expression, exponent a unary one
        return f"{_at_least(e.left, _POSTFIX)}^{_at_least(e.right, _UNARY)}"
    level = _BINARY_LEVEL[e.op]
    return f"{_at_least(e.left, level)} {e.op} {_at_least(e.right, level + 1)}"
