"""Breaking a generated line longer than the line width, as black would lay it out.

Students read the generated module, and a 200-column likelihood is not readable. black does
this layout, but it costs ~40 ms per module (7x the whole compile) and the compiler runs on
every `bgmc` command and thousands of times in the tests, so this module does the part
black does that the generator needs: split inside the last bracket whose head fits, one
argument per line with a trailing comma when they do not fit on one, then before the
lowest-precedence binary operators, then string literals into adjacent pieces. A break
happens only inside brackets (implicit continuation), and a line is replaced only when the
broken text parses to the same syntax tree as the original, so layout never changes
meaning."""
from __future__ import annotations

import ast
import functools
import io
import tokenize
from dataclasses import dataclass

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")", "]", "}"}
# Binary operators from the loosest to the tightest binding (Python's precedence table).
_PRECEDENCE = [
    {"or"}, {"and"}, {"<", ">", "==", ">=", "<=", "!=", "in", "is"},
    {"|"}, {"^"}, {"&"}, {"<<", ">>"}, {"+", "-"}, {"*", "/", "//", "%", "@"},
]
_UNARY_AFTER = {"and", "or", "not", "in", "is", "if", "else", "return", "lambda", "yield",
                "assert", "del", "raise", "await", "for", "from", "import", "with", "as"}


@dataclass(frozen=True)
class _Tok:
    text: str
    kind: int
    start: int  # column where the token starts in the line
    end: int


def break_line(text: str, indent: str, width: int) -> list[str]:
    """`indent + text` as one or more lines of at most `width` columns where the syntax
    allows; the input line unchanged when it fits, cannot be tokenised on its own, or
    breaking would change its syntax tree."""
    if len(indent) + len(text) <= width or text.lstrip().startswith(("#", '"' * 3, "'" * 3)):
        return [indent + text]
    return list(_broken(text, indent, width))


@functools.lru_cache(maxsize=4096)  # the same statements recur across a session's compiles
def _broken(text: str, indent: str, width: int) -> tuple[str, ...]:
    tokens = _tokens(text)
    if tokens is None:
        return (indent + text,)
    pieces = _Layout(text, tokens, width).lines(0, len(tokens) - 1, indent, "", inner=False)
    if len(pieces) == 1 or not _same_tree(indent + text, "\n".join(pieces)):
        return (indent + text,)
    return tuple(pieces)


def _tokens(text: str) -> list[_Tok] | None:
    try:
        raw = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    toks = [_Tok(t.string, t.type, t.start[1], t.end[1]) for t in raw
            if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER,
                              tokenize.INDENT, tokenize.DEDENT)]
    if any(t.kind == tokenize.COMMENT for t in toks) or not toks:
        return None
    if any(t.start < 0 or t.end > len(text) for t in toks):
        return None
    return toks


def _parse(code: str) -> str | None:
    body = code.strip("\n")
    if body.rstrip().endswith(":"):
        body += "\n" + " " * (len(body) - len(body.lstrip()) + 4) + "pass"
    try:
        return ast.dump(ast.parse(_dedent(body)))
    except SyntaxError:
        return None


def _dedent(code: str) -> str:
    first = code.splitlines()[0]
    margin = len(first) - len(first.lstrip())
    return "\n".join(line[margin:] if line[:margin].strip() == "" else line
                     for line in code.splitlines())


def _same_tree(original: str, broken: str) -> bool:
    before = _parse(original)
    return before is not None and before == _parse(broken)


class _Layout:
    def __init__(self, text: str, tokens: list[_Tok], width: int) -> None:
        self.text, self.toks, self.width = text, tokens, width
        self.partner: dict[int, int] = {}
        self.depth: list[int] = []
        stack: list[int] = []
        for k, t in enumerate(tokens):
            self.depth.append(len(stack))
            if t.kind == tokenize.OP and t.text in _OPENERS:
                stack.append(k)
            elif t.kind == tokenize.OP and t.text in _CLOSERS and stack:
                self.partner[stack.pop()] = k
                self.depth[k] = len(stack)

    def render(self, i: int, j: int) -> str:
        return self.text[self.toks[i].start:self.toks[j].end] if i <= j else ""

    def fits(self, indent: str, s: str) -> bool:
        return len(indent) + len(s) <= self.width

    def lines(self, i: int, j: int, indent: str, suffix: str, inner: bool) -> list[str]:
        """Tokens i..j laid out at `indent`, followed by `suffix` on their last line;
        `inner` when the range sits inside brackets, where breaking between tokens is
        allowed."""
        whole = self.render(i, j) + suffix
        if self.fits(indent, whole):
            return [indent + whole]
        base = min(self.depth[i:j + 1])
        if inner:  # inside brackets, operators are the loosest delimiters (black's order)
            broken = self.split_at_operators(i, j, indent, suffix, base)
            if broken is not None:
                return broken
            if i == j and self.toks[i].kind == tokenize.STRING:
                return self.split_string(i, indent, suffix)
        pairs = [(o, c) for o, c in self.partner.items()
                 if i <= o and c <= j and self.depth[o] == base and c > o + 1]
        for o, c in sorted(pairs, reverse=True):
            head, tail = self.render(i, o), self.render(c, j) + suffix
            if self.fits(indent, head) and self.fits(indent, tail):
                return self.split_at(i, o, c, j, indent, suffix, inner)
        if pairs:
            o, c = min(pairs)
            return self.split_at(i, o, c, j, indent, suffix, inner)
        return [indent + whole]

    def split_at(self, i: int, o: int, c: int, j: int, indent: str, suffix: str,
                 inner: bool) -> list[str]:
        """Head up to the opening bracket, the contents indented, the closing bracket and
        what follows it: black's right-hand split."""
        out = self.lines(i, o, indent, "", inner) if self.render(i, o) else []
        inside = indent + "    "
        body = self.render(o + 1, c - 1)
        commas = [k for k in range(o + 1, c) if self.depth[k] == self.depth[o] + 1
                  and self.toks[k].text == "," and self.toks[k].kind == tokenize.OP]
        if self.fits(inside, body) or not commas:
            out += self.lines(o + 1, c - 1, inside, "", inner=True)
        else:
            starts = [o + 1] + [k + 1 for k in commas]
            ends = [k - 1 for k in commas] + [c - 1]
            for a, b in zip(starts, ends, strict=True):
                if a <= b:
                    out += self.lines(a, b, inside, ",", inner=True)
        out += self.lines(c, j, indent, suffix, inner)
        return out

    def split_at_operators(self, i: int, j: int, indent: str, suffix: str,
                           base: int) -> list[str] | None:
        """Break before each binary operator of the loosest precedence at this level."""
        binary = [k for k in range(i + 1, j + 1) if self.depth[k] == base
                  and self._is_binary(k)]
        for level in _PRECEDENCE:
            at = [k for k in binary if self.toks[k].text in level]
            if at:
                bounds = [i] + at + [j + 1]
                out: list[str] = []
                for a, b in zip(bounds, bounds[1:], strict=False):
                    out += self.lines(a, b - 1, indent, suffix if b == j + 1 else "",
                                      inner=True)
                return out if len(out) > 1 else None
        return None

    def _is_binary(self, k: int) -> bool:
        t, before = self.toks[k], self.toks[k - 1]
        if t.kind == tokenize.NAME and t.text not in ("and", "or", "in", "is"):
            return False
        if t.kind not in (tokenize.OP, tokenize.NAME):
            return False
        if t.text in ("in", "is") and before.text in ("not", "is"):
            return False
        if before.kind == tokenize.OP:
            return before.text in _CLOSERS
        return not (before.kind == tokenize.NAME and before.text in _UNARY_AFTER)

    def split_string(self, k: int, indent: str, suffix: str) -> list[str]:
        """A plain string literal as adjacent literals broken after spaces (Python joins
        them back into the same constant)."""
        token = self.toks[k].text
        prefix = token[:len(token) - len(token.lstrip("rRuU"))]
        quote = token[len(prefix)]
        if token[len(prefix):].startswith(quote * 3) or not token.endswith(quote):
            return [indent + token + suffix]
        body = token[len(prefix) + 1:-1]
        room = max(20, self.width - len(indent) - len(prefix) - 2 - len(suffix))
        words = body.split(" ")
        pieces, current = [], words[0]
        for word in words[1:]:
            if len(current) + 1 + len(word) > room:
                pieces.append(current + " ")
                current = word
            else:
                current += " " + word
        pieces.append(current)
        literals = [f"{prefix}{quote}{p}{quote}" for p in pieces]
        return [indent + lit for lit in literals[:-1]] + [indent + literals[-1] + suffix]
