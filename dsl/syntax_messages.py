"""Beginner-readable wording for parse errors.

The parser reports the token it met, the terminals it could have accepted, and the tokens
of the current line so far; this module turns that into one sentence ("expected ':' after
the loop range") instead of Lark's token dump. It also owns the two text-level analyses
that wording needs: bracket matching (rule 4: an unclosed bracket is reported at its
opener) and naming a character the lexer cannot read. It knows terminal names, not Lark.
"""
from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple


class Tok(NamedTuple):
    """A token as this module sees it: terminal name, text and where it starts and ends."""

    type: str
    text: str
    line: int
    column: int
    end_column: int


class Wording(NamedTuple):
    """What to say; `at` is a token to point at instead of the unexpected one."""

    message: str
    hint: str | None = None
    at: Tok | None = None


# Every terminal of grammar.lark, plus the ones the indenter and Lark add; a test checks
# that this table covers the grammar, so no raw terminal name reaches a user.
WORDS = {
    "NAME": "a name",
    "NUMBER_INT": "a number",
    "NUMBER_REAL": "a number",
    "STRING": "a string",
    "TYPE_NAME": "a type",
    "_NL": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "$END": "the end of the file",
    "COLON": "':'",
    "TILDE": "'~'",
    "EQUAL": "'='",
    "COMMA": "','",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LT": "'<'",
    "GT": "'>'",
    "LE": "'<='",
    "GE": "'>='",
    "EQ": "'=='",
    "NE": "'!='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "AT": "'@'",
    "CIRCUMFLEX": "'^'",
    "_DOTDOT": "'..'",
    "MODEL": "'model'",
    "DATA": "'data'",
    "PARAM": "'param'",
    "CONST": "'const'",
    "NET": "'net'",
    "GUIDE": "'guide'",
    "FACTOR": "'factor'",
    "FOR": "'for'",
    "IN": "'in'",
}

KEYWORDS = ("model", "data", "param", "const", "net", "for", "in", "factor", "guide")
TYPE_NAMES = ("real", "int", "positive", "unit", "simplex", "ordered", "cholesky_corr")
TYPES_HINT = "types are real, int, positive, unit, simplex[K], ordered[K], cholesky_corr[K]"
STATEMENT_HINT = ("a statement is 'x ~ Distribution(...)', 'x = expression' "
                  "or 'factor expression'")

_COMPARISONS = {"LT", "GT", "LE", "GE", "EQ", "NE"}
_OPERAND_STARTS = {"NAME", "NUMBER_INT", "NUMBER_REAL", "STRING", "LPAR", "LSQB"}
_EXPRESSION_STARTS = _OPERAND_STARTS | {"MINUS"}
_OPERAND_ENDS = {"NAME", "NUMBER_INT", "NUMBER_REAL", "STRING", "RPAR", "RSQB"}
_EXPRESSION_AFTER = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "CIRCUMFLEX", "TILDE", "EQUAL",
                     "LPAR", "LSQB", "COMMA", "_DOTDOT", "FACTOR"} | _COMPARISONS
_LINE_ENDS = {"_NL", "$END", "_DEDENT"}
_DECLARATIONS = ("data", "param", "const", "net")
_NOT_BGM = {"if", "elif", "else", "while", "def", "return", "import", "print", "let", "var",
            "sample", "observe", "target"}
_OTHER_TYPES = {"vector": "real[K]", "matrix": "real[N, M]", "array": "real[N]",
                "float": "real", "double": "real", "integer": "int", "bool": "int",
                "row_vector": "real[K]", "corr_matrix": "cholesky_corr[K]",
                "cholesky_factor_corr": "cholesky_corr[K]", "positive_ordered": "ordered[K]"}


def word(terminal: str) -> str:
    return WORDS.get(terminal, "another symbol")


def _found(tok: Tok) -> str:
    if tok.type == "NAME":
        return f"name '{tok.text}'"
    if tok.type.startswith("NUMBER"):
        return f"number {tok.text}"
    if tok.type == "TYPE_NAME":
        return f"type '{tok.text}'"
    return word(tok.type)


def _adjacent(a: Tok, b: Tok) -> bool:
    return a.line == b.line and a.end_column == b.column


def _short(written: str) -> str:
    """The line so far, shortened from the left so a message stays one readable line."""
    return written if len(written) <= 40 else "..." + written[-37:]


def describe_unexpected(found: Tok, expected: set[str], line: list[Tok], written: str,
                        rest: str = "") -> Wording:
    """What went wrong when `found` came after `line`'s tokens (whose text is `written`)
    and the parser could have accepted only `expected`; `rest` is the text after `found`
    on its line, comments stripped."""
    if found.type == "COLON" and "_DOTDOT" in expected and not rest.strip():
        found = found._replace(type="_NL")  # `for i in N:` - the loop's own colon
    for rule in _RULES:
        wording = rule(found, expected, line, written)
        if wording is not None:
            return wording
    return _fallback(found, expected, written)


def _layout(found: Tok, expected: set[str], line: list[Tok], written: str) -> Wording | None:
    if found.type == "_INDENT":
        return Wording("unexpected indentation",
                       "only the body of a 'for' loop or of 'guide:' is indented")
    first, last = (line[0], line[-1]) if line else (None, None)
    block_header = first is not None and first.type in ("FOR", "GUIDE") and \
        last is not None and last.type == "COLON"
    if block_header and last is not None and found.line == last.line \
            and found.type not in _LINE_ENDS | {"_INDENT"}:
        return Wording(f"the body of '{written}' must start on a new line",
                       "put the statements of the block on the next lines, "
                       "indented by four spaces")
    if "_INDENT" in expected or block_header:
        return Wording(f"expected an indented block after '{written}'",
                       "indent the statements of the block by four spaces")
    if found.type == "_DEDENT":
        return Wording(f"the statement '{_short(written)}' is not finished",
                       f"expected {_list(expected)}")
    return None


def _misplaced_keyword(found: Tok, expected: set[str], line: list[Tok],
                       written: str) -> Wording | None:
    """A keyword the grammar does not allow here is lexed as a name; say what it is."""
    if not line or line[0].type != "NAME":
        return None
    first = line[0]
    if first.text == "guide" and (len(line) == 1 or line[1].type == "COLON"):
        return Wording("'guide:' is only allowed at the top level, not inside a block",
                       "write one 'guide:' block at the top level of the file", at=first)
    if len(line) != 1:
        return None
    if first.text in _DECLARATIONS:
        return Wording(f"a '{first.text}' declaration cannot be inside a loop or block",
                       "declarations go at the top level of the file (a guide may declare "
                       "its own 'param' and 'net')", at=first)
    if first.text == "model":
        return Wording("'model NAME' may appear only once, as the first line of the file",
                       at=first)
    if first.text in _NOT_BGM and found.type not in ("TILDE", "EQUAL", "COLON", "LSQB"):
        return Wording(f"'{first.text}' is not a bgm statement", STATEMENT_HINT, at=first)
    return None


def _reserved_word(found: Tok, expected: set[str], line: list[Tok],
                   written: str) -> Wording | None:
    if "NAME" not in expected:
        return None
    if found.type == "TYPE_NAME":
        return Wording(f"'{found.text}' is a type name and cannot be used as a name")
    if found.text in KEYWORDS and found.type != "NAME":
        return Wording(f"'{found.text}' is a keyword and cannot be used as a name")
    return None


def _types(found: Tok, expected: set[str], line: list[Tok], written: str) -> Wording | None:
    kinds = [t.type for t in line]
    if line and line[0].type == "CONST" and len(line) == 2 and found.type == "COLON":
        return Wording("a const takes no type; its value decides it",
                       f"write '{written} = 3' (an int) or '{written} = 0.5' (a real)")
    if line and line[0].type in ("DATA", "PARAM") and len(line) == 2 and "COLON" in expected:
        if line[1].text in TYPE_NAMES:  # Stan's order: `data int N`, `data real[N] y`
            name = found.text if found.type == "NAME" else "y"
            dims = "" if found.type == "NAME" else "[N]"
            return Wording(f"expected ':' and a type after '{written}'",
                           f"the name comes first, then its type: '{line[0].text} "
                           f"{name}: {line[1].text}{dims}'")
        return Wording(f"expected ':' and a type after '{written}'",
                       f"for example '{written}: real[N]'")
    if "TYPE_NAME" in expected and found.type == "NAME":
        return Wording(f"unknown type '{found.text}'", _type_hint(found.text))
    in_type = "TYPE_NAME" in kinds
    if in_type and found.type == "LT" and line[-1].type == "RSQB":
        return Wording("bounds come before the shape, as in real<lower=0>[N]")
    if in_type and _inside_bounds(line) and found.type in _COMPARISONS:
        return Wording("a comparison inside a bound needs parentheses, as in "
                       "upper=(a < b)")
    return None


def _type_hint(text: str) -> str:
    if text in _OTHER_TYPES:
        return f"write {_OTHER_TYPES[text]}; {TYPES_HINT}"
    close = difflib.get_close_matches(text, TYPE_NAMES, n=1)
    return f"did you mean '{close[0]}'? {TYPES_HINT}" if close else TYPES_HINT


def _inside_bounds(line: list[Tok]) -> bool:
    """Whether the line ends inside `TYPE<...` (its '<' opens the bounds, not a compare)."""
    for i, tok in enumerate(line[:-1]):
        if tok.type == "TYPE_NAME" and line[i + 1].type == "LT":
            return not any(t.type == "GT" for t in line[i + 2:])
    return False


def _ranges(found: Tok, expected: set[str], line: list[Tok], written: str) -> Wording | None:
    if "_DOTDOT" not in expected:
        return None
    if _after_in(line)[:2] == ["range", "("]:
        return Wording("a loop runs over a range written a..b, not range(...)",
                       "for example 'for i in 1..N:' (both ends included)")
    if found.type == "COLON":
        return Wording("a range is written with '..', as in 1..N, not with ':'",
                       "ranges are inclusive: 1..N runs from 1 to N")
    if any(t.type == "IN" for t in line):
        example = "for i in 1..N:" if line[0].type == "FOR" else "sum(f(k) for k in 1..K)"
        return Wording(f"expected a range after 'in', as in '{example}', found {_found(found)}")
    return None


def _after_in(line: list[Tok]) -> list[str]:
    """The texts of the tokens after the line's 'in', if it has one."""
    kinds = [t.type for t in line]
    return [t.text for t in line[kinds.index("IN") + 1:]] if "IN" in kinds else []


def _loops(found: Tok, expected: set[str], line: list[Tok], written: str) -> Wording | None:
    if not line:
        return None
    if line[0].type == "FOR":
        if len(line) == 1:
            return Wording(f"expected the loop variable after 'for', found {_found(found)}")
        if len(line) == 2 and line[1].text == "in" and "IN" in expected:
            return Wording("expected the loop variable between 'for' and 'in'",
                           "for example 'for i in 1..N:'")
        if "IN" in expected:
            return Wording(f"expected 'in' after the loop variable '{line[1].text}', "
                           f"found {_found(found)}", "for example 'for i in 1..N:'")
        if "COLON" in expected:
            return Wording(f"expected ':' after the loop range '{written}'")
    if any(t.type == "FOR" for t in line) and found.type == "COMMA" and "RPAR" in expected:
        return Wording("a generator must be the only argument, as in "
                       "'sum(f(k) for k in 1..K)'")
    if line[0].type == "GUIDE" and "COLON" in expected:
        return Wording("expected ':' after 'guide'")
    return None


def _comparisons(found: Tok, expected: set[str], line: list[Tok],
                 written: str) -> Wording | None:
    if found.type in _COMPARISONS and any(t.type in _COMPARISONS for t in line):
        return Wording("comparisons cannot be chained",
                       "group them with parentheses, as in (a < b) == c")
    return None


def _statements(found: Tok, expected: set[str], line: list[Tok],
                written: str) -> Wording | None:
    if not line and found.type in ("TILDE", "EQUAL", "COLON"):
        return Wording(f"expected a name before {word(found.type)}",
                       "a statement starts with the name it defines, as in "
                       "'x ~ Normal(0, 1)'")
    if not line and found.type not in _LINE_ENDS | {"_INDENT"}:
        return Wording(f"a statement cannot start with {_found(found)}", STATEMENT_HINT)
    if not line or not expected >= {"TILDE", "EQUAL"}:
        return None
    return Wording(f"expected '~' or '=' after '{_short(written)}', found {_found(found)}",
                   STATEMENT_HINT)


def _operators(found: Tok, expected: set[str], line: list[Tok],
               written: str) -> Wording | None:
    if not line:
        return None
    last = line[-1]
    both = last._replace(end_column=found.end_column)  # two tokens the user wrote as one
    if _adjacent(last, found):
        if len(line) == 2 and last.type == found.type == "EQUAL":
            return Wording("'==' compares two values and cannot start a statement",
                           STATEMENT_HINT, at=both)
        if last.type == found.type == "STAR":
            return Wording("'**' is not an operator; a power is written a^b", at=both)
        if last.type.startswith("NUMBER") and found.type == "NAME" and found.text[0] in "eE":
            return Wording("an exponent needs digits, as in 1e3 or 2.5e-4", at=both)
    if expected & _EXPRESSION_STARTS and last.type in _EXPRESSION_AFTER:
        return Wording(f"expected an expression after '{last.text}', found {_found(found)}")
    if last.type not in _OPERAND_ENDS or found.type not in _OPERAND_STARTS:
        return None
    if _depth(line) > 0:
        return Wording(f"expected an operator or ',' before {_found(found)}",
                       "two values cannot stand side by side: write 'a * b', not 'a b'")
    if any(t.type in ("TILDE", "EQUAL", "FACTOR") for t in line):
        return Wording(f"expected an operator or the end of the line before {_found(found)}",
                       "write one statement per line, and 'a * b', not 'a b'")
    return None


def _depth(line: list[Tok]) -> int:
    """How many brackets are open at the end of `line`."""
    opened = sum(t.type in ("LPAR", "LSQB") for t in line)
    return opened - sum(t.type in ("RPAR", "RSQB") for t in line)


def _closers(found: Tok, expected: set[str], line: list[Tok],
             written: str) -> Wording | None:
    for closer in ("RPAR", "RSQB"):
        if closer in expected and found.type in _LINE_ENDS:
            return Wording(f"expected {word(closer)} before the end of the line")
    return None


_RULES = (_layout, _misplaced_keyword, _reserved_word, _types, _ranges, _loops,
          _comparisons, _statements, _operators, _closers)


def _fallback(found: Tok, expected: set[str], written: str) -> Wording:
    after = f" after '{_short(written)}'" if written else ""
    return Wording(f"expected {_list(expected)}{after}, found {_found(found)}")


def _list(expected: set[str]) -> str:
    words = sorted({word(t) for t in expected if t not in ("STRING", "_DEDENT")})
    if not words:
        return "something else"
    if len(words) > 6:
        return ", ".join(words[:6]) + " or another symbol"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


# ---- characters the lexer cannot read ---------------------------------------------------

_LOOKALIKES = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u00b7": "*",
    "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u2026": "..",
    "\u201c": '"', "\u201d": '"', "\u2018": '"', "\u2019": '"', "\u00a0": " ",
}
_CHARACTER_HINTS = {
    ";": "a statement ends at the end of its line; remove the ';'",
    "&": "there are no logical operators; multiply 0/1 comparisons instead",
    "|": "there are no logical operators; use comparisons, which give 0/1",
    "!": "write '!=' for 'not equal'",
    "%": "there is no '%' operator",
    "{": "blocks are indented, not braced",
    "}": "blocks are indented, not braced",
    "\\": "a statement continues on the next line only inside ( ) or [ ]",
    "$": "names use letters, digits and '_'",
    "?": "there is no conditional operator",
}


def describe_character(line_text: str, line: int, column: int) -> Wording:
    """Why the character at `column` (1-based) of `line_text` cannot start a token."""
    char = line_text[column - 1: column]
    before, after = line_text[column - 2: column - 1], line_text[column: column + 1]
    if char == ".":
        if before.isdigit():
            return Wording("a real number needs digits after the point",
                           "write 1.0, not 1.")
        if after.isdigit():
            return Wording("a real number needs digits before the point",
                           "write 0.5, not .5")
        return Wording("unexpected '.'", "a range is written a..b; there are no "
                       "attributes or methods")
    if char == "'":
        return Wording("strings use double quotes", 'write "linear", not \'linear\'')
    if char == '"':
        return _bad_string(line_text, line, column)
    if char in _LOOKALIKES:
        shown = f"{_shown(char)} ({_char_name(char)})" if _shown(char)[0] == "'" else \
            _char_name(char)
        return Wording(f"{shown} is not ASCII", f"write '{_LOOKALIKES[char]}' instead")
    if char.isalpha():
        return Wording(f"names are ASCII: '{char}' cannot be part of a name",
                       "use letters a-z, A-Z, digits and '_'")
    if not char.isprintable() or char.isspace():
        return Wording(f"unexpected character {_char_name(char)}",
                       "delete it; a bgm file holds printable text")
    return Wording(f"unexpected character '{char}'", _CHARACTER_HINTS.get(char))


def _bad_string(line_text: str, line: int, column: int) -> Wording:
    """A string the STRING terminal refused: never closed on its line, or holding a
    character rule 2 does not allow (then blame that character)."""
    close = line_text.find('"', column)
    if close < 0:
        return Wording("this string is never closed", 'end it with \'"\' on the same line')
    for i in range(column, close):
        char = line_text[i]
        if not (char.isascii() and (char.isalnum() or char in "_ .-")):
            return Wording(f"a string cannot hold {_shown(char)}",
                           "strings hold letters, digits, spaces and '_', '.', '-'",
                           at=Tok("STRING", char, line, i + 1, i + 2))
    return Wording("unexpected '\"'")  # pragma: no cover - the lexer would have matched


def _shown(char: str) -> str:
    return f"'{char}'" if char.isprintable() and not char.isspace() else _char_name(char)


def _char_name(char: str) -> str:
    code = f"U+{ord(char):04X}"
    name = unicodedata.name(char, "")
    return f"{code} {name}" if name else code


# ---- brackets -------------------------------------------------------------------------


@dataclass(frozen=True)
class BracketReport:
    """The bracket structure of a whole text, by character offset.

    `unclosed`: openers with no closer anywhere after them; `stray`: closers that match
    no opener (value None) or close an opener of the other kind (value: its offset).
    A mismatched closer still closes its opener, so one typo gives one report.
    """

    unclosed: frozenset[int]
    stray: dict[int, int | None]


def match_brackets(text: str) -> BracketReport:
    """Match ( ) and [ ] in `text`, skipping comments and strings."""
    stack: list[int] = []
    stray: dict[int, int | None] = {}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "#\"":
            i = _skip_comment_or_string(text, i)
            continue
        if ch in "([":
            stack.append(i)
        elif ch in ")]":
            opener = stack.pop() if stack else None
            if opener is None or "([".index(text[opener]) != ")]".index(ch):
                stray[i] = opener
        i += 1
    return BracketReport(frozenset(stack), stray)


def _skip_comment_or_string(text: str, i: int) -> int:
    """The offset after the comment or string starting at `i`; both end at a line break
    (a string also at its closing quote), as the lexer reads them."""
    j = i + 1
    while j < len(text) and text[j] != "\n" and not (text[i] == '"' and text[j] == '"'):
        j += 1
    return j + 1 if j < len(text) and text[j] == '"' else j


def describe_stray(closer: str, opener: str | None, where: str) -> Wording:
    """The wording for a closer that matches nothing, or closes the other kind."""
    if opener is None:
        return Wording(f"'{closer}' closes nothing: there is no '{_pair(closer)}' before it",
                       "delete it, or add the missing opening bracket")
    return Wording(f"'{closer}' does not match the '{opener}' {where}",
                   f"close '{opener}' with '{_pair(opener)}'")


def _pair(bracket: str) -> str:
    return {"(": ")", "[": "]", ")": "(", "]": "["}[bracket]
