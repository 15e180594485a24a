"""User text never becomes code: hypothesis-generated hostile identifiers, model names and
file names go through `compile`, and the generated module's syntax tree, with identifiers
renamed consistently and string literals blanked, equals the one for benign names."""
from __future__ import annotations

import ast
import builtins
import keyword

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compiler.api import compile_string
from compiler.tables.names import IDENTIFIER, reserved_reason

TEMPLATE = """model {M}
data {N}: int
data {Y}: real[{N}]
data {X}: real[{N}]
{A} ~ Normal(0, 1 + 1)
{B} ~ HalfNormal(1)
{C}: real[2] ~ Normal(0, 1)
for {I} in 1..{N}:
    {D}[{I}] = {A} + {C}[1] * {X}[{I}]
    {Y}[{I}] ~ Normal({D}[{I}], {B})
"""
ROLES = ("M", "N", "Y", "X", "A", "B", "C", "I", "D")

# Names Python, torch or the generated module give a meaning to.
HOSTILE = sorted(
    {*keyword.kwlist, *keyword.softkwlist, *dir(builtins), "torch", "rt", "dist", "self",
     "math", "inf", "nan", "np", "os", "sys", "acc", "data", "u", "shape", "given", "draws",
     "Normal", "exec", "eval", "compile", "open"}
)


def _allowed(name: str) -> bool:
    return bool(IDENTIFIER.match(name)) and name.isascii() and reserved_reason(name) is None


NAMES = st.one_of(st.sampled_from([h for h in HOSTILE if _allowed(h)]),
                  st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True).filter(_allowed))
FILE_NAMES = st.text(min_size=1, max_size=40).map(lambda s: s.replace("/", "") + ".bgm")


def _shape(source: str) -> str:
    """The module's syntax tree with identifiers renamed in order of first appearance and
    every string literal blanked: its structure, whatever the user's names were."""
    tree = ast.parse(source)
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        return names.setdefault(name, f"n{len(names)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = rename(node.id)
        elif isinstance(node, ast.arg):
            node.arg = rename(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            node.name = rename(node.name)
        elif isinstance(node, ast.Attribute):
            node.attr = rename(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(["None", "inf", "torch", "rt", "self", "nan", "float", "i", "print"],
         'x""" if __import__("os").system("touch PWNED") else """.bgm')
@example(["True", "N", "Y", "X", "lambda_", "B", "C", "I", "D"], "\\\"\x00\ud800\n.bgm")
@given(st.lists(NAMES, min_size=len(ROLES), max_size=len(ROLES),
                unique_by=lambda s: s.lower()), FILE_NAMES)
def test_hostile_names_do_not_change_the_generated_code(names: list[str], file: str) -> None:
    hostile = dict(zip(ROLES, names, strict=True))
    # benign names that sort as the hostile ones do (the generator sorts some lists)
    benign = {role: "q" + name.lower() for role, name in hostile.items()}
    hostile_code = compile_string(TEMPLATE.format(**hostile), name=file).python
    benign_code = compile_string(TEMPLATE.format(**benign), name="benign.bgm").python
    assert _shape(hostile_code) == _shape(benign_code)
    compile(hostile_code, "<generated>", "exec")  # and Python accepts it as it is
