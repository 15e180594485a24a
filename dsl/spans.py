"""Source text and positions: every syntax node and diagnostic points back into a Source."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns are 1-based, end_column is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def union(self, other: Span) -> Span:
        """The smallest span covering both, for nodes built from several tokens."""
        start = min((self.line, self.column), (other.line, other.column))
        end = max((self.end_line, self.end_column), (other.end_line, other.end_column))
        return Span(start[0], start[1], end[0], end[1])


@dataclass(frozen=True)
class Source:
    """A program's text and the name it is reported under (a path or '<string>')."""

    path: str
    text: str

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 1 <= line <= len(lines) else ""
