"""Edge cases a fuzzer found: each mistake is one located error at check (BgmError) or
when the data is loaded (DataError), never an internal error or a torch error at fit."""
from __future__ import annotations

from pathlib import Path

import pytest

from compiler.api import compile_string
from dsl.diagnostics import BgmError
from runtime.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _error(src: str) -> tuple[str, int, int]:
    with pytest.raises(BgmError) as info:
        compile_string(src, "edge.bgm")
    diagnostics = info.value.diagnostics
    assert len(diagnostics) == 1, [d.message for d in diagnostics]
    d = diagnostics[0]
    return d.message, d.span.line, d.span.column


def _data_error(src: str, data: dict) -> str:
    program = compile_string(src, "edge.bgm")
    with pytest.raises(DataError) as info:
        program.bind(data, device="cpu")
    return str(info.value)


def test_flow_base_indexed_by_a_slice() -> None:
    src = (ROOT / "examples" / "flow_moons.bgm").read_text().replace(
        "x[i] = f(u[i])", "x[2..1] = f(u[i])")
    message, line, col = _error(src)
    assert "the flow's base 'u' must be indexed as 'x[2..1]'" in message
    assert (line, col) == (src.splitlines().index("    x[2..1] = f(u[i])") + 1, 17)


def test_size_cannot_be_drawn() -> None:
    message, line, col = _error("data N: int\ndata y: real[N]\nN ~ Poisson(3)\n"
                                "for i in 1..N:\n    y[i] ~ Normal(0, 1)\n")
    assert message == "'N' is a size; modelling it with '~' is not supported yet"
    assert (line, col) == (3, 1)


def test_huge_loop() -> None:
    message, line, col = _error("for k in 1..1000000000000000000000000000000:\n"
                                "    mu[k] ~ Normal(0, 1)\n")
    assert "more than the limit of 100000000" in message
    assert (line, col) == (1, 10)


def test_huge_declared_shape() -> None:
    message, line, col = _error("beta: real[2147483648] ~ Normal(0, 1)\n")
    assert "2147483648 elements, more than the limit of 100000000" in message
    assert (line, col) == (1, 12)


def test_huge_inferred_shape() -> None:
    message, line, col = _error("for k in 1..10000:\n    for j in 1..100000:\n"
                                "        mu[k, j] ~ Normal(0, 1)\n")
    assert "'mu' has 1000000000 elements, more than the limit" in message
    assert (line, col) == (3, 9)


def test_column_index_with_data_size_is_typed_and_checked() -> None:
    src = ("data N: int\ndata M: real[N, 2]\nfor i in 1..N:\n"
           "    x[i] ~ Normal(sum(M[:, i + N]), 1)\n")
    message = _data_error(src, {"N": 2, "M": [[1, 2], [3, 4]]})
    assert message == ("edge.bgm:4:28: the index 'i + N' of 'M' at the first iteration "
                       "(i = 1) is 3 given the data, but must be at most 2")
    compile_string(src, "edge.bgm").bind({"N": 1, "M": [[1, 2]]}, device="cpu")


def test_lkj_eta_vector() -> None:
    message, line, col = _error("u: real<lower=0>[3] ~ HalfNormal(1)\n"
                                "w: cholesky_corr[3] ~ LKJCholesky(u)\n")
    assert message == "LKJCholesky's parameter eta must be a number; 'u' has shape [3]"
    assert (line, col) == (2, 35)


def test_int_type_wider_than_categorical() -> None:
    message, line, col = _error("w: int<lower=0, upper=3> ~ Categorical(ones(2) / 2)\n")
    assert message == ("'w' is declared int<lower=0, upper=3>, which is wider than the "
                       "support {1, ..., 2} of its prior Categorical")
    assert (line, col) == (1, 4)


def test_int_type_wider_than_categorical_given_the_data() -> None:
    src = "data K: int\nw: int<lower=1, upper=3> ~ Categorical(ones(K) / K)\n"
    message = _data_error(src, {"K": 2})
    assert message == ("edge.bgm:2:4: the upper bound of 'w': int<lower=1, upper=3> (inside "
                       "the support {1, ..., K} of Categorical) is 3 given the data, but "
                       "must be at most 2")
    compile_string(src, "edge.bgm").bind({"K": 3}, device="cpu")


def test_discrete_uniform_reversed() -> None:
    message, line, col = _error("w ~ DiscreteUniform(3, 1)\n")
    assert message == "DiscreteUniform(3, 1) has its lower bound above its upper bound"
    assert (line, col) == (1, 5)


def test_discrete_uniform_reversed_by_the_data() -> None:
    message = _data_error("data N: int\nw ~ DiscreteUniform(N, 1)\n", {"N": 3})
    assert message == ("edge.bgm:2:5: the number of values of DiscreteUniform(N, 1) "
                       "(upper - lower + 1) is -1 given the data, but must be at least 1")


def test_shifted_data_index_out_of_range() -> None:
    src = ("data N: int\ndata k: int<lower=1, upper=2>[N]\ndata M: real[N, 2]\n"
           "for i in 1..N:\n    e[i] ~ Normal(M[k[i] + 2, 1], 1)\n")
    data = {"N": 3, "k": [1, 2, 1], "M": [[0.1, 0.2], [-0.3, 0.4], [1.5, -2.0]]}
    message = _data_error(src, data)
    assert message == ("edge.bgm:5:21: the index 'k[i] + 2' of 'M' is 4 for some element "
                       "given the data, but must be an index from 1 to 3")
    data = {"N": 4, "k": [1, 2, 1, 2], "M": [[0.1, 0.2]] * 4}
    compile_string(src, "edge.bgm").bind(data, device="cpu")


@pytest.mark.parametrize("src, message, column", [
    ("model M\ns: real<lower=-9^9^9> ~ Gamma(2, 2)\n", "too large for a real", 16),
    ("model M\ndata x: real<upper=1/0>\n", "division by zero", 20),
    ("model M\nparam w: real<lower=log(-1)>\n", "log(-1) has no real value", 21),
])
def test_a_declared_bound_with_no_real_value_is_located(src: str, message: str,
                                                         column: int) -> None:
    """A constant bound is folded before supports read it as a number (it used to escape
    as an internal error)."""
    text, line, col = _error(src)
    assert message in text and (line, col) == (2, column)
