"""Comments and blank lines: recorded while lexing, attached to statements after parsing.

The grammar folds comments into newline tokens so they never disturb indentation;
CommentLog pulls them back out with their positions, and attach_comments hangs each one
on the statement it belongs to, so `bgmc fmt` can print them where the user wrote them:
a comment on its own line leads the next statement (or closes the block it is indented
in); a comment after code on the same line trails that statement.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dsl import nodes as n


@dataclass(frozen=True)
class Comment:
    line: int
    column: int
    text: str
    trailing: bool  # after code on the same line


@dataclass
class CommentLog:
    comments: list[Comment] = field(default_factory=list)
    blank_lines: set[int] = field(default_factory=set)

    def record(self, token: Any) -> None:
        """Read the comments and blank lines out of one newline token."""
        segments = str(token).split("\n")
        line = token.line or 1
        first_is_code_line = (token.column or 1) > 1
        for i, segment in enumerate(segments):
            stripped = segment.strip()
            if "#" in segment:
                hash_at = segment.index("#")
                column = (token.column or 1) + hash_at if i == 0 else hash_at + 1
                self.comments.append(Comment(line + i, column, stripped[1:].strip(),
                                             trailing=(i == 0 and first_is_code_line)))
            elif not stripped and 0 < i < len(segments) - 1:
                self.blank_lines.add(line + i)


def _header_line(stmt: Any) -> int:
    """The line whose trailing comment belongs to the statement."""
    if isinstance(stmt, (n.For, n.Guide)):
        return stmt.span.line
    return stmt.span.end_line


@dataclass
class _Slot:
    leading: list[str] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)
    end: list[str] = field(default_factory=list)
    blank: bool = False


def _flatten(body: tuple[Any, ...], out: list[Any], blocks: list[Any]) -> None:
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, (n.For, n.Guide)):
            blocks.append(stmt)
            _flatten(stmt.body, out, blocks)


def attach_comments(program: n.Program, log: CommentLog) -> n.Program:
    """Return the program with every recorded comment on its statement."""
    stmts: list[Any] = []
    blocks: list[Any] = []
    _flatten(program.body, stmts, blocks)
    slots: dict[int, _Slot] = {id(s): _Slot() for s in stmts}
    top = _Slot()
    header_line = program.name.span.line if program.name else None
    for c in log.comments:
        _place(c, stmts, blocks, slots, top, header_line)
    _mark_blank_lines(program.body, log.blank_lines, slots)
    body = tuple(_rebuild(s, slots) for s in program.body)
    return dataclasses.replace(program, body=body, comments=tuple(top.leading),
                               trailing=_join(top.trailing), end_comments=tuple(top.end))


def _place(c: Comment, stmts: list[Any], blocks: list[Any], slots: dict[int, _Slot],
           top: _Slot, header_line: int | None) -> None:
    if c.trailing:
        if header_line == c.line:
            top.trailing.append(c.text)
            return
        owner = _innermost(s for s in stmts if _header_line(s) == c.line) or _innermost(
            s for s in stmts if s.span.line <= c.line <= s.span.end_line)
        if owner is not None:
            slots[id(owner)].trailing.append(c.text)
            return
    if header_line is not None and c.line < header_line:
        top.leading.append(c.text)
        return
    following = next((s for s in stmts if s.span.line > c.line), None)
    closing = _innermost(b for b in blocks if b.span.end_line < c.line
                         and b.span.column < c.column
                         and (following is None or following.span.line > b.span.end_line))
    if closing is not None and (following is None or following.span.column < c.column):
        slots[id(closing)].end.append(c.text)
    elif following is not None:
        slots[id(following)].leading.append(c.text)
    else:
        top.end.append(c.text)


def _innermost(candidates: Any) -> Any:
    best = None
    for s in candidates:
        if best is None or s.span.column > best.span.column or s.span.line > best.span.line:
            best = s
    return best


def _mark_blank_lines(body: tuple[Any, ...], blanks: set[int],
                      slots: dict[int, _Slot]) -> None:
    previous_end: int | None = None
    for stmt in body:
        if previous_end is not None and any(previous_end < b < stmt.span.line for b in blanks):
            slots[id(stmt)].blank = True
        if isinstance(stmt, (n.For, n.Guide)):
            _mark_blank_lines(stmt.body, blanks, slots)
        previous_end = stmt.span.end_line


def _join(parts: list[str]) -> str | None:
    return "; ".join(parts) if parts else None


def _rebuild(stmt: Any, slots: dict[int, _Slot]) -> Any:
    slot = slots[id(stmt)]
    changes: dict[str, Any] = {
        "comments": tuple(slot.leading),
        "trailing": _join(slot.trailing),
        "blank_before": slot.blank,
    }
    if isinstance(stmt, (n.For, n.Guide)):
        changes["body"] = tuple(_rebuild(s, slots) for s in stmt.body)
        changes["end_comments"] = tuple(slot.end)
    return dataclasses.replace(stmt, **changes)
