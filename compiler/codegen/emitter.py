"""The only writer of Python syntax: lines, indentation and comments (as Jinja2's
CodeGenerator does), so generated modules are formatted the same way every time."""
from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from compiler.codegen.linebreak import break_line

WIDTH = 100  # the generated module's line width, as the project's own code


class Emitter:
    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0
        self._optional: dict[int, str] = {}  # line index -> the local it assigns

    def binding(self, name: str, text: str) -> None:
        """A line that only assigns the local `name` (data unpacked at a function's top):
        left out of the module when nothing after it in its block reads `name`."""
        self._optional[len(self._lines)] = name
        self.line(text)

    def line(self, text: str = "") -> None:
        """One statement; longer than the line width, it is broken inside its brackets."""
        if not text:
            self._lines.append("")
            return
        self._lines.extend(line.rstrip() for line in
                           break_line(text.rstrip(), "    " * self._depth, WIDTH))

    def lines(self, texts: list[str]) -> None:
        for t in texts:
            self.line(t)

    def comment(self, text: str) -> None:
        """Comment lines; text from the user (a file name) cannot end the comment early or
        hold characters the module's UTF-8 cannot (control characters, lone surrogates).
        A comment longer than the line width (100) continues on indented lines."""
        width = max(40, WIDTH - 4 * self._depth - 2)
        for part in text.splitlines() or [""]:
            safe = "".join(c if c.isprintable() and not "\ud800" <= c <= "\udfff"
                           else ascii(c)[1:-1] for c in part)
            pieces = textwrap.wrap(safe, width, subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False,
                                   drop_whitespace=True) if len(safe) > width else [safe]
            for piece in pieces or [""]:
                self.line(f"# {piece}".rstrip())

    def blank(self) -> None:
        if self._lines and self._lines[-1] != "":
            self._lines.append("")

    @contextmanager
    def indent(self, header: str | None = None) -> Iterator[None]:
        if header is not None:
            self.line(header)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def text(self) -> str:
        lines = [line for i, line in enumerate(self._lines) if self._is_read(i)]
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines) + "\n"

    def _is_read(self, index: int) -> bool:
        """Whether the local an optional line assigns is read later in its block (a word
        outside comments and quotes; a false match only keeps a line)."""
        name = self._optional.get(index)
        if name is None:
            return True
        line = self._lines[index]
        depth = len(line) - len(line.lstrip())
        word = re.compile(rf"(?<![\w.'\"]){re.escape(name)}(?![\w'\"])")
        for later in self._lines[index + 1:]:
            stripped = later.lstrip()
            if stripped and len(later) - len(stripped) < depth:
                return False
            if not stripped.startswith("#") and word.search(later):
                return True
        return False


def tuple_code(items: list[str]) -> str:
    """Python source of a tuple of expressions: (), (a,), (a, b)."""
    if not items:
        return "()"
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def str_tuple_code(items: list[str]) -> str:
    """Python source of a tuple of string literals: (), ('a',), ('a', 'b')."""
    return tuple_code([repr(i) for i in items])
