"""Edge cases of expression code generation that a fuzzer found: each program the checker
accepts compiles to code whose value is checked against the maths written by hand, and
each mistake is a located error, never an internal one."""
from __future__ import annotations

import math

import pytest
import torch

from compiler.api import compile_string
from dsl.diagnostics import BgmError
from runtime.errors import DataError

LOG_2PI = math.log(2 * math.pi)


def normal(x: float, mu: float, sigma: float) -> float:
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * LOG_2PI


def log_prob(src: str, data: dict, values: dict[str, list[float] | float]) -> float:
    """The log density (MAP mode is not needed: every latent here is unconstrained)."""
    model = compile_string(src, "edge.bgm").bind(data, device="cpu")
    theta = model.packer.pack({k: torch.tensor([v], dtype=torch.float64)
                               for k, v in values.items()}, 1)
    out = model.log_prob(theta)
    assert out.shape == (1,)
    return float(out[0])


def generated(src: str) -> str:
    return compile_string(src, "edge.bgm").python


# 1. real() of an int computed at run time (not a literal)
def test_length_of_latent_as_real_factor():
    lp = log_prob("v: real[2] ~ Normal(0, 1)\nfactor length(v)\n", {}, {"v": [0.3, -0.2]})
    assert lp == pytest.approx(normal(0.3, 0, 1) + normal(-0.2, 0, 1) + 2.0, abs=1e-12)


def test_sum_generator_of_constant_over_data_range_as_real():
    src = "data K: int\na ~ Normal(0, square(sum(2 for g in 1..K)))\n"
    lp = log_prob(src, {"K": 3}, {"a": 0.5})
    assert lp == pytest.approx(normal(0.5, 0, 36.0), abs=1e-12)


# 2. a discrete latent in a plate whose Categorical is given by logits
def test_categorical_logits_in_plate_is_summed_out():
    src = ("data N: int\ndata y: real[N]\nmu ~ Normal(0, 1)\nfor i in 1..N:\n"
           "    e[i] ~ Categorical(logits=[0.0, log(3.0)])\n"
           "    y[i] ~ Normal(e[i] + mu, 1)\n")
    y, mu = [1.0, 2.5], 0.2
    want = normal(mu, 0, 1) + sum(
        math.log(0.25 * math.exp(normal(v, 1 + mu, 1)) + 0.75 * math.exp(normal(v, 2 + mu, 1)))
        for v in y)
    assert log_prob(src, {"N": 2, "y": y}, {"mu": mu}) == pytest.approx(want, abs=1e-10)


def test_categorical_logits_of_a_built_vector_compiles():
    src = "data N: int\nmu ~ Normal(0, 1)\nfor i in 1..N:\n    e[i] ~ Categorical(logits=ones(2))\n"
    # summing e out leaves log(1) per element: only mu's prior
    assert log_prob(src, {"N": 3}, {"mu": 0.4}) == pytest.approx(normal(0.4, 0, 1), abs=1e-12)


# 3. an int declared latent with a continuous prior
@pytest.mark.parametrize("src", ["w: int ~ Laplace(0, 1)\n",
                                 "data N: int\nfor i in 1..N:\n    w[i]: int ~ Normal(0, 1)\n"])
def test_int_latent_with_continuous_prior_is_located_error(src):
    with pytest.raises(BgmError) as info:
        compile_string(src, "edge.bgm")
    text = str(info.value)
    assert "declared int" in text and "continuous" in text
    assert "internal" not in text.lower()
    assert info.value.diagnostics[0].span is not None  # type: ignore[attr-defined]


# 4. a variable defined whole and also step by step
def test_whole_and_step_by_step_definition_is_located_error():
    src = ("data T: int\ndata y: real[T]\ny: real[2] ~ Normal(0, 1)\nfor t in 3..T:\n"
           "    y[t] ~ Normal(y[t-1], 1)\n")
    with pytest.raises(BgmError) as info:
        compile_string(src, "edge.bgm")
    assert "'y' is data: its type comes from its declaration" in str(info.value)
    assert info.value.diagnostics[0].span.line == 3  # type: ignore[attr-defined]


# 5. generators whose body does not use the variable
def test_prod_of_constant_literal():
    src = "a ~ Normal(0, 1)\nfactor a + prod(100 for g in 1..2)\n"
    assert log_prob(src, {}, {"a": 0.5}) == pytest.approx(normal(0.5, 0, 1) + 0.5 + 1e4)


def test_prod_of_constant_data():
    src = "data N: int\na ~ Normal(0, 1)\nfactor a + prod(N for g in 1..2)\n"
    assert log_prob(src, {"N": 3}, {"a": 0.5}) == pytest.approx(normal(0.5, 0, 1) + 0.5 + 9)


def test_prod_and_log_sum_exp_of_constant_latent():
    src = ("data K: int\na ~ Normal(0, 1)\n"
           "factor prod(a for g in 1..K) + log_sum_exp(a for g in 1..K)\n"
           "factor log_sum_exp(2.0 for g in 1..K) + prod(1.5 for g in 1..K)\n")
    a, k = 0.7, 3
    want = normal(a, 0, 1) + a ** k + a + math.log(k) + 2.0 + math.log(k) + 1.5 ** k
    assert log_prob(src, {"K": k}, {"a": a}) == pytest.approx(want, abs=1e-12)


def test_sum_of_constant_keeps_precedence():
    src = "a ~ Normal(0, 1)\nfactor sum(a + 1 for g in 1..3)\n"
    assert log_prob(src, {}, {"a": 0.5}) == pytest.approx(normal(0.5, 0, 1) + 4.5)


# 6. nested generators
def test_nested_generators():
    src = ("a ~ Normal(0, 1)\n"
           "b ~ Normal(sum(log_sum_exp(a * g for g in 1..2) for h in 1..2), 1)\n"
           "factor sum(sum(a * g * h for g in 1..2) for h in 1..3)\n")
    a, b = 0.3, 0.1
    inner = math.log(math.exp(a) + math.exp(2 * a))
    want = normal(a, 0, 1) + normal(b, 2 * inner, 1) + a * 3 * 6
    assert log_prob(src, {}, {"a": a, "b": b}) == pytest.approx(want, abs=1e-12)


# 7. mean of int data
def test_mean_generator_of_int_data():
    src = "data N: int\ndata k: int[N]\na ~ Normal(mean(k[g] for g in 1..N), 1)\n"
    lp = log_prob(src, {"N": 3, "k": [1, 2, 4]}, {"a": 0.5})
    assert lp == pytest.approx(normal(0.5, 7 / 3, 1), abs=1e-12)


def test_log_sum_exp_generator_of_int_data():
    src = "data N: int\ndata k: int[N]\na ~ Normal(log_sum_exp(k[g] for g in 1..N), 1)\n"
    lp = log_prob(src, {"N": 3, "k": [1, 2, 4]}, {"a": 0.5})
    mu = math.log(math.e + math.e ** 2 + math.e ** 4)
    assert lp == pytest.approx(normal(0.5, mu, 1), abs=1e-12)


# 8. length() of an operator expression
def test_length_of_expression():
    src = ("data K: int\ndata x: real[3]\nd2 = K\nt = length(x * d2)\n"
           "a ~ Normal(t, 1)\n")
    assert "(x * d2).shape[-1]" in generated(src)
    lp = log_prob(src, {"K": 2, "x": [1.0, 2.0, 3.0]}, {"a": 0.5})
    assert lp == pytest.approx(normal(0.5, 3, 1), abs=1e-12)


# 9. dot() of an operand with an operator
def test_dot_parenthesises_operands():
    src = ("data M: real[3, 2]\nb ~ Normal(0, 1)\n"
           "factor dot(M[:, 1], M @ [b, 2.5])\nfactor dot(M[:, 2] + 1, [b, 1, 2])\n")
    m = [[1, 2], [3, 4], [5, 6]]
    b = 0.4
    d1 = sum(r[0] * (r[0] * b + r[1] * 2.5) for r in m)
    d2 = (m[0][1] + 1) * b + (m[1][1] + 1) * 1 + (m[2][1] + 1) * 2
    assert log_prob(src, {"M": m}, {"b": b}) == pytest.approx(normal(b, 0, 1) + d1 + d2)


# 10. element-wise functions of Python numbers
def test_elementwise_functions_of_scalar_data():
    src = ("data N: int\na ~ Normal(0, square(N + 0.5))\n"
           "b ~ Normal(softplus(N), exp(sum(N)))\nfactor log(N) + abs(N - 5)\n")
    n, a, b = 3, 0.2, -0.4
    want = (normal(a, 0, (n + 0.5) ** 2) + normal(b, math.log1p(math.exp(n)), math.exp(n))
            + math.log(n) + 2)
    assert log_prob(src, {"N": n}, {"a": a, "b": b}) == pytest.approx(want, abs=1e-12)


# 11. reductions over an empty range
def test_max_over_empty_data_range_is_located_data_error():
    src = "data K: int\nu: real[K] ~ Normal(0, 1)\nd = max(u[g] for g in 2..K-1)\n"
    program = compile_string(src, "edge.bgm")
    with pytest.raises(DataError) as info:
        program.bind({"K": 2}, device="cpu")
    assert "edge.bgm:3:5" in str(info.value) and "max(" in str(info.value)
    model = program.bind({"K": 4}, device="cpu")  # non-empty: fine, and the right value
    assert model is not None


def test_max_min_mean_over_data_range_values():
    src = ("data K: int\nu: real[K] ~ Normal(0, 1)\n"
           "factor max(u[g] for g in 2..K) + 10 * min(u[g] for g in 1..K-1)"
           " + 100 * mean(u[g] for g in 1..K)\n")
    u = [0.1, -0.3, 0.2]
    want = sum(normal(x, 0, 1) for x in u) + max(u[1:]) + 10 * min(u[:2]) + 100 * sum(u) / 3
    assert log_prob(src, {"K": 3}, {"u": u}) == pytest.approx(want, abs=1e-12)


def test_sum_and_prod_over_empty_range_are_0_and_1():
    src = ("data K: int\na ~ Normal(0, 1)\n"
           "factor sum(a * g for g in 1..K) + prod(a * g for g in 1..K)"
           " + prod(2.0 for g in 1..K)\n")
    assert log_prob(src, {"K": 0}, {"a": 0.5}) == pytest.approx(normal(0.5, 0, 1) + 2.0)


@pytest.mark.parametrize("func", ["max", "min", "mean", "log_sum_exp"])
def test_reduction_over_constant_empty_range_is_located_error(func):
    src = f"a ~ Normal(0, 1)\nfactor {func}(a * g for g in 3..2)\n"
    with pytest.raises(BgmError) as info:
        compile_string(src, "edge.bgm")
    assert "empty range" in str(info.value)
    assert info.value.diagnostics[0].span.line == 2  # type: ignore[attr-defined]


DOT_MODELS = {
    "dot(X[i], w)": "y[i] ~ Normal(dot(X[i], w), 1)",
    "dot(w, X[i])": "y[i] ~ Normal(dot(w, X[i]) + a, 1)",
    "sum(X[i] * w)": "y[i] ~ Normal(sum(X[i] * w), 1)",
}


def test_a_dot_product_over_a_plate_is_one_matrix_product_with_the_same_density() -> None:
    """dot(X[i], w) over a plate is generated as w @ X.mT (issue 18: one GEMM, not a
    chains x N x D product); its log density and gradient equal the elementwise sum's."""
    import torch

    from compiler.api import compile_string
    head = ("data N: int\ndata D: int\ndata X: real[N, D]\ndata y: real[N]\n"
            "a ~ Normal(0, 1)\nw: real[D] ~ Normal(0, 1)\nfor i in 1..N:\n    ")
    rng = torch.Generator().manual_seed(0)
    data = {"N": 7, "D": 3, "X": torch.randn(7, 3, generator=rng).tolist(),
            "y": torch.randn(7, generator=rng).tolist()}
    theta = torch.randn(5, 4, 4, dtype=torch.float64, generator=rng)
    results = {}
    for label, line in DOT_MODELS.items():
        program = compile_string(head + line + "\n", "dot.bgm")
        if label.startswith("dot"):
            assert ".mT" in program.python and ").sum(-1)" not in program.python
        model = program.bind(data, device="cpu")
        x = theta.clone().requires_grad_(True)
        lp = model.log_prob(x)
        (grad,) = torch.autograd.grad(lp.sum(), x)
        results[label] = (lp.detach(), grad)
    plain, gemm, flipped = (results[k] for k in ("sum(X[i] * w)", "dot(X[i], w)",
                                                 "dot(w, X[i])"))
    assert torch.allclose(gemm[0], plain[0], rtol=1e-12) and torch.allclose(gemm[1], plain[1])
    assert flipped[0].shape == (5, 4)
