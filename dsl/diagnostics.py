"""Diagnostics are values: a message, a span and optional notes and hint.

Every user mistake the front end or the compiler finds becomes a Diagnostic; they are
raised together as one BgmError and printed as `file:line:col: error: ...` with the
source line and carets under the span, the way stanc3 and rustc print them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dsl.spans import Source, Span


@dataclass(frozen=True)
class Note:
    """A secondary location ("first defined here") attached to a diagnostic."""

    message: str
    span: Span


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None
    hint: str | None = None
    notes: tuple[Note, ...] = field(default=())
    severity: str = "error"


class BgmError(Exception):
    """One or more user errors in a program, with the source they refer to."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source | None = None):
        self.diagnostics = sorted(diagnostics, key=_position)
        self.source = source
        super().__init__(self.render())

    def render(self, color: bool = False) -> str:
        return "\n".join(render(d, self.source, color) for d in self.diagnostics)


class Problem(Exception):
    """One diagnostic raised from deep inside a pass; the pass collects them into a
    BgmError so that all the mistakes of a kind are reported together."""

    def __init__(self, message: str, span: Any, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)


class InternalError(Exception):
    """A broken invariant inside bgmc: never the user's fault."""

    def __init__(self, message: str):
        super().__init__(f"internal error: {message} (this is a bug in bgmc; please report it)")


def _position(d: Diagnostic) -> tuple[int, int]:
    return (d.span.line, d.span.column) if d.span else (0, 0)


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def excerpt(source: Source, span: Span, color: bool = False) -> list[str]:
    """The numbered source line of a span with carets under it."""
    # Control characters would act on the terminal; show each as one '?' instead.
    text = "".join(c if c.isprintable() or c == "\t" else "?"
                   for c in source.line_text(span.line))
    width = len(str(span.line))
    end = span.end_column if span.end_line == span.line else len(text) + 1
    carets = "^" * max(1, end - span.column)
    gutter = " " * width
    # Tabs are copied so the carets line up however the terminal expands them.
    pad = "".join(c if c == "\t" else " " for c in text[:span.column - 1])
    pad += " " * (span.column - 1 - len(pad))
    return [
        f" {span.line} | {text}",
        f" {gutter} | {pad}{_paint(carets, '1;31', color)}",
    ]


def render(d: Diagnostic, source: Source | None, color: bool = False) -> str:
    """Format one diagnostic as the compiler prints it."""
    path = source.path if source else "<input>"
    where = f"{path}:{d.span.line}:{d.span.column}" if d.span else path
    label = _paint(f"{d.severity}:", "1;31" if d.severity == "error" else "1;33", color)
    lines = [f"{where}: {label} {d.message}"]
    if d.span and source:
        lines += excerpt(source, d.span, color)
    for note in d.notes:
        lines.append(f"{path}:{note.span.line}:{note.span.column}: note: {note.message}")
        if source:
            lines += excerpt(source, note.span, color)
    if d.hint:
        lines.append(f"hint: {d.hint}")
    return "\n".join(lines)
