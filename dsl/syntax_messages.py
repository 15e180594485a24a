"""Beginner-readable wording for parse errors.

The parser reports what token it met, which terminals it expected, and the tokens of the
current line so far; this module turns that into one sentence ("expected ':' after the
loop range") instead of Lark's token dump. It knows terminal names but not Lark.
"""
from __future__ import annotations

_WORDS = {
    "NAME": "a name",
    "NUMBER_INT": "a number",
    "NUMBER_REAL": "a number",
    "STRING": "a string",
    "TYPE_NAME": "a type (real, int, positive, unit, simplex, ordered, cholesky_corr)",
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
    "__ANON_0": "'..'",
    "DOTDOT": "'..'",
    "CIRCUMFLEX": "'^'",
    "IN": "'in'",
    "FOR": "'for'",
}

_EXPRESSION_STARTS = {"NAME", "NUMBER_INT", "NUMBER_REAL", "LPAR", "LSQB", "MINUS"}
_STATEMENT_KEYWORDS = {"data", "param", "const", "net", "for", "factor", "guide", "model"}


def _word(terminal: str, text: str = "") -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    if text:
        return f"'{text}'"
    return terminal.lower()


def _found(terminal: str, text: str) -> str:
    if terminal == "NAME":
        return f"name '{text}'"
    if terminal.startswith("NUMBER"):
        return f"number {text}"
    return _word(terminal, text)


def _is_dotdot(terminals: set[str]) -> bool:
    return any(t in terminals for t in ("__ANON_0", "DOTDOT"))


def describe_unexpected(found: str, text: str, expected: set[str],
                        line: list[tuple[str, str]]) -> tuple[str, str | None]:
    """(message, hint) for an unexpected token `found` after `line`'s tokens."""
    first = line[0][1] if line else ""
    last = line[-1] if line else ("", "")
    what = _found(found, text)
    if found == "_INDENT":
        return "unexpected indentation", "only the body of a 'for' or 'guide:' is indented"
    if found == "_DEDENT" and "_INDENT" not in expected:
        return "unexpected end of the block", None
    if "_INDENT" in expected or (last[0] == "COLON" and first in ("for", "guide")):
        return f"expected an indented block after '{_target_text(line)}'", \
            "indent the statements of the block by four spaces"
    if first in ("data", "param", "const", "net") and line[0][0] == "NAME":
        return f"'{first}' declarations are only allowed at the top level", \
            "move the declaration out of the loop or block"
    if first == "model" and line[0][0] == "NAME":
        return "'model NAME' may appear only once, as the first statement", None
    if first in ("data", "param") and len(line) == 2 and "COLON" in expected:
        return f"expected ':' and a type after '{first} {line[1][1]}'", \
            f"for example '{first} {line[1][1]}: real[N]'"
    if "TYPE_NAME" in expected and found == "NAME":
        return f"unknown type '{text}'", \
            "types are real, int, positive, unit, simplex[K], ordered[K], cholesky_corr[K]"
    if found in {"LT", "GT", "LE", "GE", "EQ", "NE"} and any(
            t[0] in {"LT", "GT", "LE", "GE", "EQ", "NE"} for t in line[1:]):
        return "comparisons do not chain; use parentheses: (a < b) < c", None
    if first == "for":
        message = _describe_for(expected, what, line)
        if message:
            return message, None
    if "COLON" in expected and first == "guide":
        return "expected ':' after 'guide'", None
    if last[0] == "NAME" and expected >= {"TILDE", "EQUAL"} and len(line) >= 1:
        return f"expected '~' or '=' after '{_target_text(line)}', found {what}", \
            "a statement is 'x ~ Distribution(...)', 'x = expression' or 'factor expression'"
    if expected & _EXPRESSION_STARTS and last[1] in {"+", "-", "*", "/", "@", "^", "~", "=",
                                                     "(", ",", "<", ">", "==", "..", "["}:
        return f"expected an expression after '{last[1]}', found {what}", None
    if "RPAR" in expected and found in ("_NL", "$END"):
        return "expected ')' before the end of the line", None
    if "RSQB" in expected and found in ("_NL", "$END"):
        return "expected ']' before the end of the line", None
    if found == "NAME" and text in _STATEMENT_KEYWORDS:
        return f"'{text}' cannot appear here", _keyword_hint(text)
    if found in ("NAME", "NUMBER_INT", "NUMBER_REAL", "LPAR") and "_NL" in expected:
        return f"unexpected {what} after the end of the statement", \
            "is an operator or a ',' missing?"
    if found in ("_NL", "$END"):
        return f"unexpected end of the line: expected {_list(expected)}", None
    return f"unexpected {what}: expected {_list(expected)}", None


def _describe_for(expected: set[str], what: str, line: list[tuple[str, str]]) -> str | None:
    if len(line) == 1 and "NAME" in expected:
        return f"expected the loop variable after 'for', found {what}"
    if "IN" in expected:
        return f"expected 'in' after the loop variable, found {what}"
    if _is_dotdot(expected):
        return f"expected '..' in the loop range ('for i in 1..N:'), found {what}"
    if "COLON" in expected:
        return "expected ':' after the loop range"
    return None


def _target_text(line: list[tuple[str, str]]) -> str:
    return "".join(text for _, text in line)


def _keyword_hint(word: str) -> str:
    if word in {"data", "param", "const", "net"}:
        return "declarations stay at the top level, outside loops"
    if word == "model":
        return "'model NAME' is the first line of the file, at most once"
    return f"'{word}' is a keyword and cannot be used as a name"


def _list(expected: set[str]) -> str:
    words = sorted({_word(t) for t in expected if not t.startswith("__") or _WORDS.get(t)})
    if not words:
        return "something else"
    if len(words) > 6:
        return ", ".join(words[:6]) + " or another token"
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]
