"""Purely syntactic rules checked on the finished tree, where Lark's grammar cannot say them.

- Rule 2: a string literal is only a keyword argument's value (`schedule="linear"`).
- Rule 3, the part the grammar owns: keywords and type names are never names. The
  contextual lexer reads `in` or `real` as a name wherever the keyword cannot appear
  (`x = in + 1`), so the tree can hold them; this closes that gap. Other reserved names
  (built-in functions, distributions, names containing `__`) need the compiler's tables
  and are checked there, with name resolution.
- Rule 21, the part that is layout: at most one `guide:` block.

Each check returns Diagnostics rather than raising, so one parse reports all of them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from dsl import nodes as n
from dsl.diagnostics import Diagnostic
from dsl.spans import Span
from dsl.syntax_messages import KEYWORDS, TYPE_NAMES


def check_syntax(program: n.Program) -> list[Diagnostic]:
    """Every violation of the rules above, in no particular order."""
    problems = _misplaced_strings(program)
    problems += _reserved_names(program)
    problems += _extra_guides(program)
    return problems


def _children(node: Any) -> Iterator[Any]:
    for f in dataclasses.fields(node):
        if f.name != "span":
            yield getattr(node, f.name)


def _walk(value: Any, parent: Any = None) -> Iterator[tuple[Any, Any]]:
    """(node, parent) for every syntax node under `value`, depth first."""
    if isinstance(value, tuple):
        for item in value:
            yield from _walk(item, parent)
    elif dataclasses.is_dataclass(value) and not isinstance(value, Span):
        yield value, parent
        for child in _children(value):
            yield from _walk(child, value)


def _misplaced_strings(program: n.Program) -> list[Diagnostic]:
    return [
        Diagnostic("a string can only be the value of a keyword argument",
                   node.span, hint='as in Diffusion(eps, schedule="linear")')
        for node, parent in _walk(program)
        if isinstance(node, n.String)
        and not (isinstance(parent, n.Keyword) and parent.value is node)
    ]


def _reserved_names(program: n.Program) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for node, _ in _walk(program):
        if isinstance(node, n.Name):
            found += _reserved(node.id, node.span)
        elif isinstance(node, n.Keyword):
            found += _reserved(node.name, _first_word(node.span, node.name))
    return found


def _reserved(name: str, span: Span) -> list[Diagnostic]:
    if name in KEYWORDS:
        return [Diagnostic(f"'{name}' is a keyword and cannot be used as a name", span)]
    if name in TYPE_NAMES:
        return [Diagnostic(f"'{name}' is a type name and cannot be used as a name", span)]
    return []


def _extra_guides(program: n.Program) -> list[Diagnostic]:
    guides = [s for s in program.body if isinstance(s, n.Guide)]
    return [
        Diagnostic("a program has at most one 'guide:' block", _first_word(g.span, "guide"),
                   hint="put all the guide's statements in the first 'guide:' block")
        for g in guides[1:]
    ]


def _first_word(span: Span, word: str) -> Span:
    return Span(span.line, span.column, span.line, span.column + len(word))
