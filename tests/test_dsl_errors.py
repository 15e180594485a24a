"""Syntax errors a beginner makes, each with the one diagnostic bgmc must print.

Every row is a broken snippet and where the error must point (line, column) and a piece
of its wording. Each must give exactly one diagnostic, rendered as
`file:line:col: error: ...`, then the numbered source line and a caret line under the
column, with nothing of Lark showing through (no token dumps or terminal names).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsl.diagnostics import BgmError
from dsl.parser import parse_file, parse_string, terminal_names
from dsl.syntax_messages import WORDS

LOOP = "for i in 1..N:\n"

CASES: list[tuple[str, str, int, int, str]] = [
    # ---- loops
    ("colon after the loop range", LOOP[:-2] + "\n    x[i] ~ Normal(0, 1)\n",
     1, 14, "expected ':' after the loop range 'for i in 1..N'"),
    ("missing 'in'", "for i 1..N:\n    x[i] ~ Normal(0, 1)\n",
     1, 7, "expected 'in' after the loop variable 'i'"),
    ("missing loop variable", "for in 1..N:\n    x ~ Normal(0, 1)\n",
     1, 8, "expected the loop variable between 'for' and 'in'"),
    ("1:N instead of 1..N", "for i in 1:N:\n    x[i] ~ Normal(0, 1)\n",
     1, 11, "a range is written with '..'"),
    ("range(N) as in Python", "for i in range(N):\n    x[i] ~ Normal(0, 1)\n",
     1, 18, "not range(...)"),
    ("range without ..", "for i in N:\n    x[i] ~ Normal(0, 1)\n",
     1, 11, "expected a range after 'in'"),
    ("loop body on the header line", "for i in 1..N: x[i] ~ Normal(0, 1)\n",
     1, 16, "must start on a new line"),
    ("loop body not indented", LOOP + "x[i] ~ Normal(0, 1)\n",
     2, 1, "expected an indented block after 'for i in 1..N:'"),
    ("empty loop at the end", "x ~ Normal(0, 1)\n" + LOOP,
     2, 15, "expected an indented block after 'for i in 1..N:'"),
    # ---- brackets (rule 4)
    ("unclosed '(' reported at the opener", "x ~ Normal(0, 1\ny ~ Normal(0, 1)\n",
     1, 11, "'(' is never closed"),
    ("unclosed '[' in a continued line", "x = y[1,\n      2\nz = 3\n",
     1, 6, "'[' is never closed"),
    ("innermost unclosed bracket", "x = exp(y[1\n",
     1, 10, "'[' is never closed"),
    ("extra ')'", "x ~ Normal(0, 1))\n", 1, 17, "')' closes nothing"),
    ("mismatched ']'", "x ~ Normal(0, 1]\n", 1, 16, "']' does not match the '('"),
    # ---- expressions
    ("missing operand", "x = 1 +\n", 1, 8, "expected an expression after '+'"),
    ("missing operand before ')'", "x = f(a *)\n", 1, 10, "expected an expression after '*'"),
    ("missing right side", "x ~\n", 1, 4, "expected an expression after '~'"),
    ("factor without expression", "factor\n", 1, 7, "expected an expression after 'factor'"),
    ("two operands, no operator", "x = a b\n", 1, 7,
     "expected an operator or the end of the line before name 'b'"),
    ("two arguments, no comma", "x ~ Normal(0 1)\n", 1, 14,
     "expected an operator or ',' before number 1"),
    ("two statements on a line", "x ~ Normal(0, 1) y ~ Normal(0, 1)\n", 1, 18,
     "expected an operator or the end of the line"),
    ("empty argument", "x ~ Normal(0,, 1)\n", 1, 14, "expected an expression after ','"),
    ("chained comparison", "x = a < b < c\n", 1, 11, "comparisons cannot be chained"),
    ("'**' for a power", "x = a ** 2\n", 1, 7, "'**' is not an operator"),
    ("exponent without digits", "x = 1e\n", 1, 5, "an exponent needs digits"),
    ("1. real literal", "x = 1.\n", 1, 6, "a real number needs digits after the point"),
    (".5 real literal", "x = .5\n", 1, 5, "a real number needs digits before the point"),
    ("slice with ':'", "x = a[1:3]\n", 1, 8, "a range is written with '..'"),
    ("generator with a second argument", "x = sum(y[k] for k in 1..K, 2)\n", 1, 27,
     "a generator must be the only argument"),
    ("positional after keyword", "x ~ Normal(mu=0, 1)\n", 1, 18,
     "a positional argument cannot follow a keyword argument"),
    ("duplicate keyword", "x ~ Normal(mu=0, mu=1)\n", 1, 18,
     "keyword argument 'mu' is given twice"),
    ("single quotes", "x = f(s='a')\n", 1, 9, "strings use double quotes"),
    ("unclosed string", 'x = f(s="abc)\n', 1, 9, "this string is never closed"),
    ("bad character in a string", 'x = f(s="a%b")\n', 1, 11, "a string cannot hold '%'"),
    ("semicolon", "x ~ Normal(0, 1);\n", 1, 17, "unexpected character ';'"),
    ("unicode minus", "x = a \u2212 b\n", 1, 7, "is not ASCII"),
    ("non-ASCII name", "\u00b5 ~ Normal(0, 1)\n", 1, 1, "names are ASCII"),
    ("control character", "x = 1\x00\n", 1, 6, "unexpected character U+0000"),
    # ---- rule 2: strings only as keyword values
    ("string as a positional argument", 'x ~ Normal("a", 1)\n', 1, 12,
     "a string can only be the value of a keyword argument"),
    ("string as a value", 'x = "linear"\n', 1, 5,
     "a string can only be the value of a keyword argument"),
    ("string in a bound", 'data x: real<lower="a">\n', 1, 20,
     "a string can only be the value of a keyword argument"),
    ("string inside a keyword value", 'x = f(k=g("a"))\n', 1, 11,
     "a string can only be the value of a keyword argument"),
    # ---- statements
    ("missing '~' or '='", "x Normal(0, 1)\n", 1, 3, "expected '~' or '=' after 'x'"),
    ("indexed target without '~'", "x[i] Normal(0, 1)\n", 1, 6,
     "expected '~' or '=' after 'x[i]'"),
    ("'+=' as in Python", "x += 1\n", 1, 3, "expected '~' or '=' after 'x'"),
    ("'==' as a statement", "x == 1\n", 1, 3, "'==' compares two values"),
    ("statement starting with '~'", "~ Normal(0, 1)\n", 1, 1, "expected a name before '~'"),
    ("statement starting with a number", "x = 1\n0 ~ Normal(0, 1)\n", 2, 1,
     "a statement cannot start with number 0"),
    ("statement in a loop starting with '('", LOOP + "    (x) ~ Normal(0, 1)\n", 2, 5,
     "a statement cannot start with '('"),
    ("'if' statement", "if x > 0:\n    y ~ Normal(0, 1)\n", 1, 1,
     "'if' is not a bgm statement"),
    ("const with a type", "const K: int = 3\n", 1, 8, "a const takes no type"),
    ("data without a type", "data N\n", 1, 7, "expected ':' and a type after 'data N'"),
    ("data type without ':'", "data N int\n", 1, 8, "expected ':' and a type after 'data N'"),
    ("net without '='", "net f MLP(2, 3)\n", 1, 7, "expected '='"),
    # ---- layout (rule 1)
    ("tab in indentation", LOOP + "\tx[i] ~ Normal(0, 1)\n", 2, 1, "a tab in indentation"),
    ("unexpected indentation", "x ~ Normal(0, 1)\n    y ~ Normal(0, 1)\n", 2, 1,
     "unexpected indentation"),
    ("indented first line", "  x ~ Normal(0, 1)\n", 1, 1, "unexpected indentation"),
    ("inconsistent dedent",
     LOOP + "        x[i] ~ Normal(0, 1)\n    y[i] ~ Normal(0, 1)\n", 3, 1,
     "matches no enclosing block"),
    ("empty program", "", 1, 1, "the program is empty"),
    ("blank program", "\n\n   \n", 1, 1, "the program is empty"),
    ("comment-only program", "# nothing yet\n", 1, 1, "the program is empty"),
    ("header only", "model M\n", 1, 7, "the model 'M' has no statements"),
    # ---- declarations and the header (rule 4)
    ("declaration inside a loop", LOOP + "    data y: real\n", 2, 5,
     "a 'data' declaration cannot be inside a loop or block"),
    ("param inside a loop", LOOP + "    param w: real\n", 2, 5,
     "a 'param' declaration cannot be inside a loop or block"),
    ("const inside the guide", "x ~ Normal(0, 1)\nguide:\n    const K = 2\n", 3, 5,
     "a 'const' declaration cannot be inside a loop or block"),
    ("guide inside a loop", LOOP + "    guide:\n        x ~ Normal(0, 1)\n", 2, 5,
     "'guide:' is only allowed at the top level"),
    ("two guides", "guide:\n    x ~ Normal(0, 1)\nguide:\n    y ~ Normal(0, 1)\n", 3, 1,
     "at most one 'guide:' block"),
    ("guide without ':'", "guide\n    x ~ Normal(0, 1)\n", 1, 6, "expected ':' after 'guide'"),
    ("second model header", "model A\nmodel B\n", 2, 1, "'model NAME' may appear only once"),
    ("header after a statement", "x ~ Normal(0, 1)\nmodel M\n", 2, 1,
     "'model NAME' may appear only once"),
    ("header without a name", "model\n", 1, 6, "expected a name after 'model'"),
    # ---- types (rules 5, 6)
    ("unknown type name", "data y: vector[3]\n", 1, 9, "unknown type 'vector'"),
    ("misspelt type name", "data y: reel\n", 1, 9, "unknown type 'reel'"),
    ("unknown bound name", "data y: real<low=0>\n", 1, 14, "unknown bound 'low'"),
    ("bound given twice", "data y: real<lower=0, lower=1>\n", 1, 23,
     "bound 'lower' is given twice"),
    ("bounds on positive", "data y: positive<lower=0>\n", 1, 17, "'positive' takes no bounds"),
    ("bounds on simplex", "w: simplex<lower=0>[K] ~ Dirichlet(a)\n", 1, 11,
     "'simplex' takes no bounds"),
    ("bounds after the shape", "data y: real[N]<lower=0>\n", 1, 16,
     "bounds come before the shape"),
    ("comparison inside a bound", "data y: real<lower=a < b>\n", 1, 22,
     "a comparison inside a bound needs parentheses"),
    # ---- rule 3, the grammar's part: keywords and type names are not names
    ("keyword as a name", "data data: real\n", 1, 6, "'data' is a keyword"),
    ("keyword in an expression", "x = in + 1\n", 1, 5, "'in' is a keyword"),
    ("keyword as an argument name", "x = f(for=1)\n", 1, 7, "'for' is a keyword"),
    ("type name as a loop variable", "for real in 1..N:\n    x ~ Normal(0, 1)\n", 1, 5,
     "'real' is a type name"),
    # ---- encodings and line endings
    ("BOM does not shift columns", "\ufeffx ~ Normal(0 1)\n", 1, 14,
     "expected an operator or ','"),
    ("CRLF line endings", "x ~ Normal(0, 1)\r\ny ~ Normal(0 1)\r\n", 2, 14,
     "expected an operator or ','"),
    ("CRLF with an unclosed bracket", "x = 1\r\ny = (1 +\r\n", 2, 5, "'(' is never closed"),
    ("old Mac line endings", "x ~ Normal(0, 1)\ry = 1 2\r", 2, 7,
     "expected an operator or the end of the line"),
    ("form feed inside a comment", "x = 1  # a \x0c b\ny = 1 2\n", 2, 7,
     "expected an operator or the end of the line"),
]

LARK_INTERNALS = re.compile(r"Token\(|__ANON|\$END|_NL\b|_INDENT|_DEDENT|NUMBER_|\bRPAR\b"
                            r"|\bLSQB\b|TYPE_NAME|Traceback")


def _error(text: str) -> BgmError:
    with pytest.raises(BgmError) as info:
        parse_string(text, "m.bgm")
    return info.value


@pytest.mark.parametrize(("text", "line", "column", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_diagnostic_at_the_right_place(text: str, line: int, column: int,
                                           message: str) -> None:
    error = _error(text)
    assert len(error.diagnostics) == 1, error.render()
    rendered = error.render()
    head, source_line, carets, *rest = rendered.split("\n")
    assert head.startswith(f"m.bgm:{line}:{column}: error: "), rendered
    assert message in head, rendered
    shown = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    shown_line = shown.split("\n")[line - 1]
    expected_line = "".join(c if c.isprintable() or c == "\t" else "?" for c in shown_line)
    assert source_line == f" {line} | {expected_line}", rendered
    gutter = " " * (len(str(line)) + 1) + " | "
    assert carets.startswith(gutter) and carets[len(gutter):].lstrip(" \t").startswith("^")
    assert len(carets[len(gutter):].split("^")[0]) == column - 1, rendered
    assert all(r.startswith("hint: ") for r in rest), rendered
    assert not LARK_INTERNALS.search(rendered), rendered


def test_the_table_has_no_duplicate_names() -> None:
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


def test_every_terminal_has_a_word() -> None:
    """No raw terminal name can reach a message: each has a wording."""
    missing = {t for t in terminal_names() if not t.startswith("__IGNORE")} - set(WORDS)
    assert not missing


def test_tree_level_problems_are_reported_together_in_order() -> None:
    error = _error('data y: positive<lower=0>\ndata z: real<low=1>\nx = "s"\n')
    assert [(d.span.line, d.span.column) for d in error.diagnostics] == [
        (1, 17), (2, 14), (3, 5)]


def test_one_message_per_place() -> None:
    """A string that is also a misplaced positional argument gets one message."""
    error = _error('x = f(a=1, "s")\n')
    assert len(error.diagnostics) == 1


def test_tabs_between_tokens_are_spaces() -> None:
    assert parse_string("x\t=\t1\t# note\n") == parse_string("x = 1  # note\n")


def test_carets_follow_tabs_in_the_line() -> None:
    rendered = _error("x\t= a b\n").render().split("\n")
    assert rendered[2].endswith("|  \t    ^")


def test_bom_and_crlf_parse_like_plain_text() -> None:
    plain = "model M\nx ~ Normal(0, 1)  # c\nfor i in 1..N:\n    y[i] ~ Normal(x, 1)\n"
    assert parse_string("\ufeff" + plain.replace("\n", "\r\n")) == parse_string(plain)


def test_parse_file_reads_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "m.bgm"
    path.write_bytes(b"\xef\xbb\xbfx ~ Normal(0, 1)\r\ny ~ Normal(0 1)\r\n")
    with pytest.raises(BgmError) as info:
        parse_file(path)
    rendered = info.value.render()
    assert rendered.startswith(f"{path}:2:14: error: ")
    assert "\r" not in rendered and "\ufeff" not in rendered


def test_parse_file_rejects_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "latin1.bgm"
    path.write_bytes("x = 1\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(BgmError, match=r"not UTF-8 text \(line 2"):
        parse_file(path)


def test_parse_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BgmError, match="cannot read"):
        parse_file(tmp_path / "missing.bgm")
