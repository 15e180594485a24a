"""Random text never crashes the parser: it parses or raises one BgmError diagnostic."""
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
        assert len(exc.diagnostics) == 1
        rendered = exc.render()
        assert rendered.startswith("fuzz.bgm")
        assert "Traceback" not in rendered and "Token(" not in rendered


@given(st.text(alphabet=ALPHABET, max_size=80))
@settings(max_examples=300, deadline=None)
def test_random_text_gives_a_tree_or_one_diagnostic(text):
    _parse_or_diagnose(text)


@pytest.mark.slow
@given(st.text(max_size=200))
@settings(max_examples=3000, deadline=None)
def test_random_unicode_gives_a_tree_or_one_diagnostic(text):
    _parse_or_diagnose(text)
