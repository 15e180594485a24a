"""Consts keep their names in generated code: a student who wrote `const L = 2` and
`for t in (L + 1)..T` reads `data__.iota(L + 1, T)` and `shape__ + (L,)`, not 3 and 2; the
value is still the folded constant (sizes compare by value)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from compiler.api import compile_string
from compiler.sizes import Size, size_of
from dsl import nodes as n

AR_L = """model ARK
const L = 2
const K = 4
data T: int
data y: real[T]
data w: real[T]
alpha ~ Normal(0, 1)
beta: real[L] ~ Normal(0, 0.5)
sigma ~ HalfNormal(1)
for t in (L + 1)..T:
    y[t] ~ Normal(alpha + sum(beta[l] * y[t - l] for l in 1..L), sigma)
for t in K..T:
    w[t] ~ Normal(0, 10)
"""


def test_generated_code_reads_consts_by_name() -> None:
    code = compile_string(AR_L, "ark.bgm").python
    assert "data__.iota(L + 1, T)" in code
    assert "data__.iota(1, L)" in code
    assert "shape__ + (L,)" in code
    assert "rt.check_loop(K, T, " in code
    assert "# ark.bgm:8  beta[L]: real" in code
    assert "        L = 2\n" in code and "        K = 4\n" in code
    assert "iota(3, T)" not in code and "(2,)" not in code


def test_a_model_written_with_consts_fits_and_samples() -> None:
    program = compile_string(AR_L, "ark.bgm")
    data = {"T": 6, "y": [0.1, 0.3, 0.2, 0.5, 0.4, 0.6], "w": [1, 2, 3, 4, 5, 6]}
    fit = program.fit(data, method="map", progress=False)
    assert list(fit.values["beta"].shape) == [2]
    draws = program.sample(data, 3)
    assert tuple(draws["y"].shape) == (3, 6)


SIZES = st.recursive(
    st.one_of(st.integers(0, 9).map(lambda v: n.Number(v)),
              st.sampled_from(["L", "K", "N"]).map(lambda x: n.Name(x))),
    lambda sub: st.one_of(
        st.tuples(sub, st.sampled_from("+-*"), sub).map(
            lambda t: n.Binary(t[1], t[0], t[2])),
        sub.map(lambda e: n.Unary("-", e))),
    max_leaves=8)


@given(SIZES)
def test_written_sizes_evaluate_to_their_value(e) -> None:
    ints = {"L": 2, "K": 5, "N": None}
    size = size_of(e, ints)
    code = size.code(lambda x: x, written=True)
    value = eval(code, {}, {"L": 2, "K": 5, "N": 7})  # noqa: S307 - our own test expression
    expected = eval(size.code(lambda x: x), {}, {"N": 7})  # noqa: S307
    assert value == expected
    assert size == Size.of(dict(size.terms))
