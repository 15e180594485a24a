"""docs/reference.md cannot drift from the implementation.

- every ```bgm block compiles;
- every ```bgm error block fails, with the first line of its message in the ```text block
  right after it;
- the distribution table lists every distribution of compiler/tables/distributions.py,
  each parameterisation in order, every parameter with its aliases and support, the
  variable's support, its event and whether it is discrete;
- every built-in function, net kind and activation is documented;
- the methods table has exactly the `--method` choices of `bgmc fit`.
"""
import re
from pathlib import Path

import pytest

from compiler.api import compile_string
from compiler.app.fitting import METHODS
from compiler.passes.diffusion import FORM as DIFFUSION_FORM
from compiler.tables.distributions import DISTRIBUTIONS, DistSpec
from compiler.tables.functions import FUNCTIONS, GENERATOR_REDUCTIONS
from compiler.tables.names import ACTIVATIONS, NET_KINDS

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def _fenced() -> list[tuple[str, str]]:
    return [(info.strip(), body) for info, body in FENCE.findall(REFERENCE)]


def _programs() -> list[str]:
    return [body for info, body in _fenced() if info == "bgm"]


def _error_examples() -> list[tuple[str, str]]:
    """(program, expected first line) for every `bgm error` block and the block after it."""
    blocks = _fenced()
    pairs = []
    for k, (info, body) in enumerate(blocks):
        if info != "bgm error":
            continue
        assert k + 1 < len(blocks) and blocks[k + 1][0] == "text", \
            f"the 'bgm error' block {body!r} is not followed by a ```text block"
        pairs.append((body, blocks[k + 1][1].strip().splitlines()[0]))
    return pairs


def test_every_block_is_marked():
    """A block with another info string would escape the checks."""
    known = {"bgm", "bgm error", "text"}
    assert {info for info, _ in _fenced()} <= known
    assert len(_programs()) >= 30 and len(_error_examples()) >= 15


@pytest.mark.parametrize("program", _programs(), ids=lambda p: p.splitlines()[0][:40])
def test_program_compiles(program):
    compile_string(program, "reference.bgm")


@pytest.mark.parametrize(("program", "message"), _error_examples(),
                         ids=lambda p: p.splitlines()[0][:40])
def test_error_example_fails_as_shown(program, message):
    with pytest.raises(Exception) as caught:
        compile_string(program, "reference.bgm")
    assert str(caught.value).splitlines()[0] == message


def _section(start: str, end: str) -> str:
    assert start in REFERENCE and end in REFERENCE, (start, end)
    return REFERENCE.split(start, 1)[1].split(end, 1)[0]


def _bound(value: object) -> str:
    if value is None:
        return "∞"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _support_text(spec: DistSpec) -> str:
    kind, *rest = spec.support
    if kind == "interval":
        lo, hi = rest
        return f"({_bound(lo)}, {_bound(hi)})"
    if kind == "int":
        lo, hi = rest
        if hi is None:
            return f"{{{lo}, {lo + 1}, {lo + 2}, …}}"
        if isinstance(hi, str) and hi.startswith("len:"):
            return f"{{{lo}, …, K}}, K the length of {hi[4:]}"
        if isinstance(lo, int) and isinstance(hi, int) and hi == lo + 1:
            return f"{{{lo}, {hi}}}"
        return f"{{{lo}, …, {hi}}}"
    return kind


def _event_text(spec: DistSpec) -> str:
    word = ["scalar", "vector", "matrix"][spec.event_rank]
    return f"{word} (of {spec.event_from})" if spec.event_from else word


def _params_text(spec: DistSpec) -> str:
    seen: list[str] = []
    for form in spec.forms:
        for p in form:
            aliases = f" ({', '.join(f'`{a}`' for a in p.aliases)})" if p.aliases else ""
            text = f"`{p.name}`{aliases}: {p.support}"
            if text not in seen:
                seen.append(text)
    return "; ".join(seen) if seen else "none (improper)" if spec.improper else ""


def _rows() -> dict[str, list[str]]:
    table = _section("<!-- distribution-table -->", "<!-- end distribution-table -->")
    rows = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_distribution_table_lists_every_distribution():
    assert set(_rows()) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_distribution_row(name):
    spec = DISTRIBUTIONS[name]
    _, forms, params, support, event, discrete = _rows()[name]
    if name == "Diffusion":  # bound by compiler/passes/diffusion.py, not by the table
        assert forms == f"`{DIFFUSION_FORM}`"
    else:
        written = [f"`{name}({', '.join(p.name for p in form)})`" for form in spec.forms]
        assert forms == ", ".join(written)
        assert params == _params_text(spec)
    for form in spec.forms:  # every parameter name and alias, also where not spelt out
        for p in form:
            assert all(f"`{a}`" in params for a in (p.name, *p.aliases)), (name, p)
    assert support == _support_text(spec)
    assert event == _event_text(spec)
    assert discrete == ("yes" if spec.discrete else "no")


def test_every_function_is_documented():
    functions = _section("## 7. Built-in functions", "## 8. Distributions")
    rows = [line for line in functions.splitlines() if line.startswith("| `")]
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)\(", "\n".join(rows)))
    assert documented == set(FUNCTIONS)
    for name in FUNCTIONS:  # every function is also used in a checked program
        assert any(re.search(rf"\b{name}\(", p) for p in _programs()), name
    line = next(ln for ln in functions.splitlines() if ln.startswith("Generator reductions:"))
    assert re.findall(r"`(\w+)`", line) == list(GENERATOR_REDUCTIONS)


def test_every_distribution_is_used_in_a_program():
    for name in DISTRIBUTIONS:
        assert any(re.search(rf"\b{name}\(", p) for p in _programs()), name


def test_nets_and_activations_are_documented():
    nets = _section("## 10. Nets", "### 10.1 MLP")
    kinds = set(re.findall(r"^\| `(\w+)` \|", nets, re.M))
    assert kinds == set(NET_KINDS)
    activations = next(p for p in nets.split("\n\n") if p.startswith("Activations"))
    assert set(re.findall(r"`(\w+)`", activations)) - {"act"} == set(ACTIVATIONS)


def test_methods_table_matches_bgmc_fit():
    table = _section("<!-- methods-table -->", "<!-- end methods-table -->")
    documented = re.findall(r"^\| `([\w-]+)` \|", table, re.M)
    assert documented == list(METHODS)
    for method in METHODS:
        assert f"`{method}`" in REFERENCE
