"""Random text never crashes the parser: it parses, or raises a BgmError whose
diagnostics all have a position and show nothing of Lark. A parse error gives exactly one
diagnostic; the rules checked on the finished tree may give several, sorted."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.diagnostics import BgmError
from dsl.parser import parse_string

ALPHABET = "abxyzN01.:~=+-*/^@()[],<>#\n  \tfordatainmodelparamconst\"_"


def _parse_or_diagnose(text: str) -> None:
    try:
        parse_string(text, "fuzz.bgm")
    except BgmError as exc:
        assert exc.diagnostics and all(d.span is not None for d in exc.diagnostics)
        spans = [(d.span.line, d.span.column) for d in exc.diagnostics if d.span]
        assert spans == sorted(spans)
        rendered = exc.render()
        assert rendered.startswith("fuzz.bgm")
        for internal in ("Traceback", "Token(", "__ANON", "$END", "_NL", "_INDENT"):
            assert internal not in rendered or internal in text, rendered


@given(st.text(alphabet=ALPHABET, max_size=80))
@settings(max_examples=300, deadline=None)
def test_random_text_gives_a_tree_or_diagnostics(text):
    _parse_or_diagnose(text)


@pytest.mark.slow
@given(st.text(max_size=200))
@settings(max_examples=3000, deadline=None)
def test_random_unicode_gives_a_tree_or_diagnostics(text):
    _parse_or_diagnose(text)
