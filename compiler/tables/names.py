"""Names: which are reserved, how user names map to Python, and "did you mean".

Generated code never pastes raw model text: every user name has already matched the
identifier rule in the grammar, is checked here against the reserved set, and is mapped
through `python_names` so Python keywords, builtins and the names generated code uses
itself get a trailing underscore (rule 3).
"""
from __future__ import annotations

import builtins
import difflib
import keyword
import re

from compiler.tables.distributions import DISTRIBUTIONS
from compiler.tables.functions import FUNCTIONS

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

KEYWORDS = frozenset({"model", "data", "param", "const", "net", "for", "in", "factor", "guide"})
TYPE_NAMES = frozenset({"real", "int", "positive", "unit", "simplex", "ordered",
                        "cholesky_corr"})
NET_KINDS = frozenset({"MLP", "GRU", "Transformer", "RealNVP", "NeuralSpline"})
# `act=` values of a net name activations from their own namespace (rule 20), so `relu`
# is neither a variable nor a reserved word.
ACTIVATIONS = frozenset({"relu", "tanh", "sigmoid", "gelu", "elu", "silu", "softplus",
                         "leaky_relu", "identity"})

# Names the generated module itself uses at module or function scope, and names that
# printed floats spell (repr(float("inf")) is `inf`): a user variable never takes them.
_GENERATED = frozenset({"torch", "rt", "dist", "self", "math", "inf", "nan"})


def reserved_reason(name: str) -> str | None:
    """Why `name` cannot name a variable, or None if it can."""
    if name in KEYWORDS:
        return f"'{name}' is a keyword"
    if name in TYPE_NAMES:
        return f"'{name}' is a type name"
    if name in DISTRIBUTIONS:
        return f"'{name}' is a distribution"
    if name in FUNCTIONS:
        return f"'{name}' is a built-in function"
    if name in NET_KINDS:
        return f"'{name}' is a kind of net"
    if "__" in name:
        return "names containing '__' are reserved for the compiler"
    return None


def python_names(names: set[str]) -> dict[str, str]:
    """A collision-free Python identifier for every user name."""
    taken = set(names)
    table: dict[str, str] = {}
    for name in sorted(names):
        assert IDENTIFIER.match(name), name
        py = name
        if keyword.iskeyword(py) or hasattr(builtins, py) or py in _GENERATED:
            py = name + "_"
            while py in taken:
                py += "_"
            taken.add(py)
        table[name] = py
    return table


def class_name(model_name: str) -> str:
    """The Python class of a model: its name capitalised, unless that is not a plain ASCII
    identifier or is one Python gives a meaning (`None`, `True`, a builtin such as
    `ValueError`): then `Model` is put in front, so no name can capture another."""
    name = model_name[:1].upper() + model_name[1:]
    if IDENTIFIER.match(name) and name.isascii() and not keyword.iskeyword(name) and \
            not hasattr(builtins, name) and name not in _GENERATED:
        return name
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                      for c in model_name)
    return "Model_" + cleaned


def doc_text(text: str) -> str:
    """`text` safe inside a generated triple-quoted docstring or a comment: non-ASCII and
    control characters escaped, backslashes doubled and quotes escaped, so a file named
    `x\"\"\" ... \"\"\".bgm` ends no docstring and starts no code."""
    return ascii(text)[1:-1].replace('"', '\\"')


def did_you_mean(name: str, candidates: list[str] | set[str]) -> str | None:
    """A hint naming the closest candidate, as compilers print it."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
