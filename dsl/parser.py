"""Text to syntax tree. The only module that imports Lark.

The grammar lives in grammar.lark and is built once (LALR, contextual lexer). Lark's
exceptions are turned into one beginner-readable Diagnostic at this boundary
(`raise ... from None`), using dsl.syntax_messages for the wording.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import DedentError, Indenter

from dsl import nodes as n
from dsl.comments import CommentLog, attach_comments
from dsl.diagnostics import BgmError, Diagnostic
from dsl.spans import Source, Span
from dsl.syntax_messages import describe_unexpected

_GRAMMAR = Path(__file__).with_name("grammar.lark")


class _SyntaxProblem(Exception):
    """Raised inside the indenter; converted to a Diagnostic by parse()."""

    def __init__(self, message: str, span: Span, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)


def _token_span(tok: Token) -> Span:
    return Span(tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


class _BlockIndenter(Indenter):
    """Python-style INDENT/DEDENT, plus what bgm adds: no tabs, comment capture,
    the tokens of the current line (for error wording) and the open brackets."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def __init__(self) -> None:
        super().__init__()
        self.comments = CommentLog()
        self.line_tokens: list[Token] = []
        self.open_brackets: list[Token] = []
        self._line_ended = False

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.comments = CommentLog()
        self.line_tokens = []
        self.open_brackets = []
        self._line_ended = False
        for tok in super().process(self._watch(stream)):
            yield tok

    def _watch(self, stream: Iterator[Token]) -> Iterator[Token]:
        for tok in stream:
            if tok.type in self.OPEN_PAREN_types:
                self.open_brackets.append(tok)
            elif tok.type in self.CLOSE_PAREN_types and self.open_brackets:
                self.open_brackets.pop()
            if tok.type == self.NL_type:
                self.comments.record(tok)
                self._line_ended = self._line_ended or not self.open_brackets
            else:
                if self._line_ended:  # keep the line until the next one starts (error wording)
                    self.line_tokens, self._line_ended = [], False
                self.line_tokens.append(tok)
            yield tok

    def handle_NL(self, token: Token) -> Iterator[Token]:
        indent_str = token.rsplit("\n", 1)[1]
        if self.paren_level == 0 and "\t" in indent_str:
            line = (token.end_line or 1)
            raise _SyntaxProblem(
                "a tab in indentation; indent with spaces",
                Span(line, 1, line, len(indent_str) + 1),
            )
        yield from super().handle_NL(token)


@dataclass
class _ParserState:
    lark: Lark
    indenter: _BlockIndenter = field(repr=False)


@functools.lru_cache(maxsize=1)
def _parser() -> _ParserState:
    indenter = _BlockIndenter()
    lark = Lark(
        _GRAMMAR.read_text(),
        parser="lalr",
        lexer="contextual",
        postlex=indenter,
        propagate_positions=True,
        maybe_placeholders=True,
    )
    return _ParserState(lark, indenter)


def parse_file(path: str | Path) -> tuple[n.Program, Source]:
    """Read and parse a .bgm file; a missing or unreadable file is a BgmError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BgmError([Diagnostic(f"cannot read '{path}': {exc.strerror}", None)],
                       Source(str(path), "")) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BgmError([Diagnostic(f"'{path}' is not UTF-8 text (byte {exc.start})", None)],
                       Source(str(path), "")) from None
    source = Source(str(path), text)
    return parse_source(source), source


def parse_string(text: str, path: str = "<string>") -> n.Program:
    return parse_source(Source(path, text.removeprefix("\ufeff")))


def parse_source(source: Source) -> n.Program:
    """Parse a Source into a Program or raise one BgmError with a single diagnostic."""
    text = source.text.replace("\r\n", "\n")
    _reject_empty_and_leading_indent(text, source)
    state = _parser()
    text = text if text.endswith("\n") else text + "\n"
    try:
        tree = state.lark.parse(text)
    except _SyntaxProblem as exc:
        raise BgmError([exc.diagnostic], source) from None
    except UnexpectedInput as exc:
        raise BgmError([_diagnose(exc, state.indenter, source)], source) from None
    except DedentError:
        raise BgmError([_dedent_diagnostic(text)], source) from None
    except LarkError as exc:  # pragma: no cover - defensive: Lark's other failures
        raise BgmError([Diagnostic(f"cannot parse this program ({type(exc).__name__})",
                                   None)], source) from None
    try:
        program: n.Program = _ToNodes(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, _SyntaxProblem):
            raise BgmError([exc.orig_exc.diagnostic], source) from None
        raise
    return attach_comments(program, state.indenter.comments)


def _reject_empty_and_leading_indent(text: str, source: Source) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            width = len(line) - len(line.lstrip())
            raise BgmError([Diagnostic("unexpected indentation at the start of the program",
                                       Span(number, 1, number, width + 1))], source)
        return
    raise BgmError([Diagnostic("the program is empty: write at least one statement",
                               Span(1, 1, 1, 1))], source)


def _diagnose(exc: UnexpectedInput, indenter: _BlockIndenter, source: Source) -> Diagnostic:
    if isinstance(exc, UnexpectedCharacters):
        line, col = exc.line, exc.column
        text = source.line_text(line)
        char = text[col - 1: col] or "?"
        if char == "." and col > 1 and text[col - 2].isdigit():
            return Diagnostic("a real number needs digits after the point",
                              Span(line, col, line, col + 1), hint="write 1.0, not 1.")
        if char == "'":
            return Diagnostic("strings use double quotes", Span(line, col, line, col + 1))
        return Diagnostic(f"unexpected character '{char}'", Span(line, col, line, col + 1))
    assert isinstance(exc, UnexpectedToken)
    tok: Token = exc.token
    unclosed = [b for b in indenter.open_brackets if _never_closed(source.text, b.start_pos)]
    if unclosed:
        opener = unclosed[0]
        closer = ")" if opener.type == "LPAR" else "]"
        return Diagnostic(f"'{opener}' is never closed",
                          _token_span(opener), hint=f"add the matching '{closer}'")
    previous = [t for t in indenter.line_tokens if t is not tok]
    span = _token_span(tok) if tok.type != "$END" else _end_span(source)
    if tok.type == "_INDENT":
        line = tok.end_line or span.line
        span = Span(line, 1, line, len(str(tok)) + 1)
    if tok.type == "_NL":
        line = previous[-1].end_line if previous else span.line
        col = previous[-1].end_column if previous else span.column
        span = Span(line or 1, col or 1, line or 1, (col or 1) + 1)
    message, hint = describe_unexpected(
        tok.type, str(tok), set(exc.expected), [(t.type, str(t)) for t in previous])
    return Diagnostic(message, span, hint)


def _dedent_diagnostic(text: str) -> Diagnostic:
    """Find the first line whose indentation matches no enclosing block."""
    stack = [0]
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        width = len(line) - len(line.lstrip(" "))
        if width > stack[-1]:
            stack.append(width)
            continue
        while width < stack[-1]:
            stack.pop()
        if width != stack[-1]:
            return Diagnostic("this line's indentation matches no enclosing block",
                              Span(number, 1, number, width + 1),
                              hint="indent it like the block it belongs to")
    return Diagnostic("inconsistent indentation", None)  # pragma: no cover


def _never_closed(text: str, start: int | None) -> bool:
    """Whether the bracket at `start` has no matching closer anywhere after it."""
    depth, i = 0, start or 0
    while i < len(text):
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif ch == '"':
            close = text.find('"', i + 1)
            i = close if close >= 0 else len(text)
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                return False
        i += 1
    return True


def _end_span(source: Source) -> Span:
    lines = source.text.rstrip("\n").split("\n")
    return Span(len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)


# ---- tree to nodes ----------------------------------------------------------------


def _span(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _block_span(meta: Any, last: Any) -> Span:
    """A block's span ends at its last statement, not at the newline Lark counts in."""
    end = _expr_span(last)
    return Span(meta.line, meta.column, end.end_line, end.end_column)


def _line_span(meta: Any, text: str) -> Span:
    """A simple statement's span without the newline token (and comment) Lark counts in:
    it ends at the first '#' or line break outside brackets."""
    depth, line, col, end = 0, meta.line, meta.column, (meta.line, meta.column)
    for ch in text[meta.start_pos:meta.end_pos]:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and ch in "#\n":
            break
        if ch == "\n":
            line, col = line + 1, 1
            continue
        col += 1
        if ch != " ":
            end = (line, col)
    return Span(meta.line, meta.column, end[0], end[1])


def _name(tok: Token) -> n.Name:
    return n.Name(str(tok), span=_token_span(tok))


_BOUND_NAMES = ("lower", "upper")
_UNBOUNDED_TYPES = ("positive", "unit", "simplex", "ordered", "cholesky_corr")


@v_args(meta=True)
class _ToNodes(Transformer):  # type: ignore[type-arg]
    """Lark tree → dsl.nodes; also enforces the purely syntactic rules Lark cannot."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def _line(self, meta: Any) -> Span:
        return _line_span(meta, self.text)

    def start(self, meta: Any, children: list[Any]) -> n.Program:
        header = children[0] if children and isinstance(children[0], n.Name) else None
        body = tuple(c for c in children if c is not None and not isinstance(c, n.Name))
        return n.Program(header, body, span=_span(meta) if not meta.empty else Span(1, 1, 1, 1))

    def header(self, meta: Any, children: list[Any]) -> n.Name:
        return _name(children[0])

    def data_decl(self, meta: Any, c: list[Any]) -> n.DataDecl:
        return n.DataDecl(_name(c[0]), c[1], span=self._line(meta))

    def param_decl(self, meta: Any, c: list[Any]) -> n.ParamDecl:
        return n.ParamDecl(_name(c[0]), c[1], span=self._line(meta))

    def const_decl(self, meta: Any, c: list[Any]) -> n.ConstDecl:
        return n.ConstDecl(_name(c[0]), c[1], span=self._line(meta))

    def net_decl(self, meta: Any, c: list[Any]) -> n.NetDecl:
        args, kwargs = c[2] if c[2] is not None else ((), ())
        return n.NetDecl(_name(c[0]), _name(c[1]), args, kwargs, span=self._line(meta))

    def guide_block(self, meta: Any, c: list[Any]) -> n.Guide:
        return n.Guide(tuple(c), span=_block_span(meta, c[-1]))

    def sample_stmt(self, meta: Any, c: list[Any]) -> n.Sample:
        return n.Sample(c[0], c[1], c[2], span=self._line(meta))

    def assign_stmt(self, meta: Any, c: list[Any]) -> n.Assign:
        return n.Assign(c[0], c[1], span=self._line(meta))

    def factor_stmt(self, meta: Any, c: list[Any]) -> n.Factor:
        return n.Factor(c[0], span=self._line(meta))

    def for_stmt(self, meta: Any, c: list[Any]) -> n.For:
        return n.For(_name(c[0]), c[1], tuple(c[2:]), span=_block_span(meta, c[-1]))

    def target(self, meta: Any, c: list[Any]) -> n.Target:
        return n.Target(_name(c[0]), tuple(c[1:]), span=_span(meta))

    # ---- types
    def type(self, meta: Any, c: list[Any]) -> n.Type:
        base, bounds, dims = str(c[0]), c[1] or {}, c[2] or ()
        if bounds and base in _UNBOUNDED_TYPES:
            raise _SyntaxProblem(f"'{base}' takes no bounds; use real<lower=..., upper=...>",
                                 _span(meta))
        return n.Type(base, bounds.get("lower"), bounds.get("upper"), tuple(dims),
                      span=_span(meta))

    def bounds(self, meta: Any, c: list[Any]) -> dict[str, n.Expr]:
        found: dict[str, n.Expr] = {}
        for name, value in (x for x in c if isinstance(x, tuple)):
            if str(name) in found:
                raise _SyntaxProblem(f"bound '{name}' is given twice", _token_span(name))
            found[str(name)] = value
        return found

    def bound(self, meta: Any, c: list[Any]) -> tuple[Token, n.Expr]:
        if str(c[0]) not in _BOUND_NAMES:
            raise _SyntaxProblem(f"unknown bound '{c[0]}'; a type takes 'lower' and 'upper'",
                                 _token_span(c[0]))
        return (c[0], c[1])

    def dims(self, meta: Any, c: list[Any]) -> tuple[n.Expr, ...]:
        return tuple(c)

    # ---- expressions
    def range(self, meta: Any, c: list[Any]) -> n.Range:
        return n.Range(c[0], c[1], span=_span(meta))

    def compare(self, meta: Any, c: list[Any]) -> n.Compare:
        left, op, right = c
        if isinstance(left, n.Compare) or isinstance(right, n.Compare):  # pragma: no cover
            raise _SyntaxProblem("comparisons do not chain; use parentheses", _span(meta))
        return n.Compare(str(op), left, right, span=_span(meta))

    def binop(self, meta: Any, c: list[Any]) -> n.Binary:
        return n.Binary(str(c[1]), c[0], c[2], span=_span(meta))

    def neg(self, meta: Any, c: list[Any]) -> n.Unary:
        return n.Unary("-", c[1], span=_span(meta))

    def power(self, meta: Any, c: list[Any]) -> n.Binary:
        return n.Binary("^", c[0], c[1], span=_span(meta))

    def index(self, meta: Any, c: list[Any]) -> n.Index:
        return n.Index(c[0], tuple(c[1:]), span=_span(meta))

    def slice(self, meta: Any, c: list[Any]) -> n.Slice:
        return n.Slice(c[0], span=_span(meta))

    def full_slice(self, meta: Any, c: list[Any]) -> n.FullSlice:
        return n.FullSlice(span=_span(meta))

    def real(self, meta: Any, c: list[Any]) -> n.Number:
        return n.Number(float(c[0]), span=_token_span(c[0]))

    def int(self, meta: Any, c: list[Any]) -> n.Number:
        return n.Number(int(c[0]), span=_token_span(c[0]))

    def string(self, meta: Any, c: list[Any]) -> n.String:
        return n.String(str(c[0])[1:-1], span=_token_span(c[0]))

    def name(self, meta: Any, c: list[Any]) -> n.Name:
        return _name(c[0])

    def call(self, meta: Any, c: list[Any]) -> n.Call:
        args, kwargs = c[1] if c[1] is not None else ((), ())
        return n.Call(_name(c[0]), args, kwargs, span=_span(meta))

    def generator(self, meta: Any, c: list[Any]) -> n.Generator:
        return n.Generator(_name(c[0]), c[1], _name(c[2]), c[3], span=_span(meta))

    def vector(self, meta: Any, c: list[Any]) -> n.Vector:
        return n.Vector(tuple(c), span=_span(meta))

    def arguments(self, meta: Any, c: list[Any]) -> tuple[tuple[n.Expr, ...], tuple[n.Keyword, ...]]:
        args: list[n.Expr] = []
        kwargs: list[n.Keyword] = []
        for item in c:
            if isinstance(item, n.Keyword):
                if any(k.name == item.name for k in kwargs):
                    raise _SyntaxProblem(f"keyword argument '{item.name}' is given twice",
                                         item.span)
                kwargs.append(item)
            elif kwargs:
                raise _SyntaxProblem("a positional argument cannot follow a keyword argument",
                                     _expr_span(item))
            else:
                args.append(item)
        return tuple(args), tuple(kwargs)

    def keyword(self, meta: Any, c: list[Any]) -> n.Keyword:
        return n.Keyword(str(c[0]), c[1], span=_span(meta))


def _expr_span(expr: Any) -> Span:
    return getattr(expr, "span", Span(1, 1, 1, 1))
