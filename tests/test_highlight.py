"""Highlighting: the Pygments lexer and the TextMate grammar are built from the Lark
grammar's words and the compiler's tables, and cannot drift from them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pygments.lexers
from pygments.token import Error, Keyword, Name

from compiler.tables.distributions import DISTRIBUTIONS
from compiler.tables.names import KEYWORDS, TYPE_NAMES
from compiler.teaching.highlight import TEXTMATE, BgmLexer, textmate_text, vocabulary
from dsl.parser import grammar_words

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.bgm"))


def test_the_vocabulary_is_the_grammar_s_and_the_compiler_s() -> None:
    words = grammar_words()
    assert set(words["keywords"]) == set(KEYWORDS)  # the words the checker reserves
    assert set(words["types"]) == set(TYPE_NAMES)
    assert set(vocabulary()["distributions"]) == set(DISTRIBUTIONS)


def test_the_committed_textmate_grammar_is_generated_from_it() -> None:
    assert TEXTMATE.read_text() == textmate_text(), \
        "run `python -m compiler.app.editors` and commit editors/bgm.tmLanguage.json"


def test_the_lexer_is_registered_by_its_entry_point() -> None:
    assert isinstance(pygments.lexers.get_lexer_by_name("bgm"), BgmLexer)
    assert isinstance(pygments.lexers.get_lexer_for_filename("model.bgm"), BgmLexer)


def test_every_example_lexes_without_errors_and_every_word_is_classified() -> None:
    v = vocabulary()
    for path in EXAMPLES:
        tokens = list(BgmLexer().get_tokens(path.read_text()))
        assert not [t for t in tokens if t[0] is Error], path
        for kind, text in tokens:
            if text in v["keywords"] and kind is Name:
                raise AssertionError(f"{path}: keyword {text} lexed as a name")
    tokens = dict((text, kind) for kind, text in BgmLexer().get_tokens(
        "model M\ndata x: real[3]\nnet f = MLP(3, 2, act=relu)\nfor i in 1..3:\n"
        "    y[i] ~ Normal(exp(f(x))[1], 1)\n"))
    assert tokens["model"] in Keyword and tokens["real"] is Keyword.Type
    assert tokens["Normal"] is Name.Class and tokens["MLP"] is Name.Builtin.Pseudo
    assert tokens["exp"] is Name.Builtin and tokens["relu"] is Name.Constant


def test_the_textmate_patterns_match_what_they_name() -> None:
    """Its regexes are plain enough for Python's re too: each scope finds its words."""
    grammar = json.loads(TEXTMATE.read_text())
    scopes = {p["name"]: re.compile(p["match"]) for p in grammar["patterns"]}
    line = 'net f = MLP(3, 2, act=relu)\nx ~ Diffusion(f, schedule="cosine")  # c\n'
    assert scopes["support.class.net.bgm"].search(line)[0] == "MLP"
    assert scopes["support.class.distribution.bgm"].search(line)[0] == "Diffusion"
    assert scopes["support.constant.activation.bgm"].search(line)[0] == "relu"
    assert scopes["string.quoted.double.bgm"].search(line)[0] == '"cosine"'
    assert scopes["keyword.control.bgm"].findall("for i in 1..N") == ["for", "in"]
    assert scopes["keyword.control.bgm"].search("format") is None


def test_the_vs_code_extension_points_at_the_grammar() -> None:
    """editors/ is a VS Code extension folder: its manifest names the grammar's file and
    scope, and its language configuration knows bgm's comments."""
    editors = TEXTMATE.parent
    manifest = json.loads((editors / "package.json").read_text())
    (grammar,) = manifest["contributes"]["grammars"]
    assert (editors / grammar["path"]).resolve() == TEXTMATE
    assert grammar["scopeName"] == json.loads(TEXTMATE.read_text())["scopeName"]
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".bgm"]
    config = json.loads((editors / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
