"""Source text and positions: every syntax node and diagnostic points back into a Source."""
from __future__ import annotations

from dataclasses import dataclass


def normalize(text: str) -> str:
    """The text the parser reads: no byte-order mark, and every line ending a bare '\n'.

    Positions count lines by '\n' only (as Lark does), so anything that maps a position
    back to text must read this same normalised form; a lone '\r' ends a line, as in
    Python's universal newlines, rather than being an invisible stray character.
    """
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


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
        """Line `line` (1-based) as the parser counted it; not str.splitlines(), which
        also breaks at form feeds and U+2028 and would put carets on the wrong line."""
        lines = normalize(self.text).split("\n")
        return lines[line - 1] if 1 <= line <= len(lines) else ""
