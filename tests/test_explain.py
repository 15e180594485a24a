"""`bgmc explain`: the factorised joint (sympy) against factorisations written by hand,
its LaTeX through matplotlib's mathtext, and the symbolic conjugate posteriors against
the exact posteriors `--method exact` computes on the same data."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import sympy as sp

from compiler.api import compile_file, compile_string
from compiler.app.fitting import runtime_plan
from compiler.cli import main
from compiler.passes.conjugacy import conjugate_plan
from compiler.teaching.explain import conjugate_posteriors, density, joint
from runtime.exact import posterior_parameters

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.bgm"))


def _joint(stem: str) -> sp.Expr:
    return joint(compile_file(ROOT / "examples" / f"{stem}.bgm").compiled.model)


def _mul(*factors: sp.Expr) -> sp.Expr:
    return sp.Mul(*factors, evaluate=False)


def test_the_coin_factorises_as_written_by_hand() -> None:
    theta, i, n = sp.Symbol("theta"), sp.Symbol("i", integer=True), sp.Symbol("N")
    y = sp.IndexedBase("y")
    want = _mul(density("Beta", theta, 2, 2),
                sp.Product(density("Bernoulli", y[i], theta), (i, 1, n)))
    assert _joint("coin") == want


def test_the_regression_factorises_as_written_by_hand() -> None:
    alpha, sigma = sp.Symbol("alpha"), sp.Symbol("sigma")
    beta, x = sp.Symbol("beta", commutative=False), sp.Symbol("X", commutative=False)
    y = sp.Symbol("y", commutative=False)
    want = _mul(density("Normal", alpha, 0, 10), density("Normal", beta, 0, 10),
                density("HalfNormal", sigma, 5),
                density("Normal", y, x * beta + alpha, sigma))
    assert _joint("linear_regression") == want


def test_the_mixture_factorises_as_written_by_hand() -> None:
    w = sp.Symbol("w", commutative=False)
    k, i = sp.Symbol("k", integer=True), sp.Symbol("i", integer=True)
    mu, s, z, x = (sp.IndexedBase(v) for v in ("mu", "s", "z", "x"))
    big_k, big_n = sp.Symbol("K"), sp.Symbol("N")
    want = _mul(density("Dirichlet", w, sp.Function("ones")(big_k)),
                sp.Product(_mul(density("Normal", mu[k], 0, 10), density("HalfNormal", s[k], 5)),
                           (k, 1, big_k)),
                sp.Product(_mul(density("Categorical", z[i], w),
                                density("Normal", x[i], mu[z[i]], s[z[i]])), (i, 1, big_n)))
    assert _joint("gaussian_mixture") == want


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda p: p.stem)
def test_every_explanation_prints_and_its_latex_renders(model: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from matplotlib import mathtext
    assert main(["explain", str(model)]) == 0
    text = capsys.readouterr().out
    assert "joint density:" in text and "inference plan:" in text
    assert main(["explain", "--latex", str(model)]) == 0
    latex = capsys.readouterr().out
    formulas = [line.strip() for line in latex.splitlines() if "\\" in line]
    assert formulas
    for formula in formulas:
        mathtext.math_to_image(f"${formula}$", io.BytesIO(), format="png")


# ---- conjugate posteriors: the formula on the data = the exact posterior ---------------
CONJUGATE = {
    "beta-bernoulli": ("data N: int\ndata y: int<lower=0, upper=1>[N]\ntheta ~ Beta(2, 2)\n"
                       "for i in 1..N:\n    y[i] ~ Bernoulli(theta)\n",
                       {"N": 8, "y": [1, 0, 0, 1, 1, 0, 1, 1]}),
    "beta-binomial": ("data N: int\ndata n: int[N]\ndata y: int<lower=0>[N]\n"
                      "theta ~ Beta(1, 3)\nfor i in 1..N:\n    y[i] ~ Binomial(n[i], theta)\n",
                      {"N": 3, "n": [10, 4, 7], "y": [3, 1, 6]}),
    "gamma-poisson": ("data N: int\ndata y: int<lower=0>[N]\nlam ~ Gamma(2, 0.5)\n"
                      "for i in 2..N:\n    y[i] ~ Poisson(lam)\n",
                      {"N": 5, "y": [9, 4, 2, 7, 3]}),
    "normal-normal": ("data N: int\ndata y: real[N]\ndata s: real[N]\nmu ~ Normal(1, 3)\n"
                      "for i in 1..N:\n    y[i] ~ Normal(mu, s[i])\n",
                      {"N": 4, "y": [0.5, 2.0, -1.0, 1.5], "s": [1.0, 2.0, 0.5, 1.0]}),
    "beta-bernoulli-nested": ("data N: int\ndata M: int\ndata y: int<lower=0, upper=1>[N, M]\n"
                              "theta ~ Beta(2, 2)\nfor i in 1..N:\n    for j in 1..M:\n"
                              "        y[i, j] ~ Bernoulli(theta)\n",
                              {"N": 2, "M": 3, "y": [[1, 0, 1], [1, 1, 0]]}),
    "dirichlet-categorical": ("data N: int\ndata y: int[N]\nw ~ Dirichlet([1.0, 2.0, 0.5])\n"
                              "for i in 1..N:\n    y[i] ~ Categorical(w)\n",
                              {"N": 6, "y": [1, 3, 3, 2, 3, 1]}),
}


def _numeric(e: sp.Expr, data: dict[str, Any]) -> Any:
    """The formula's value on the data: sizes first, then sums expanded, then values."""
    sizes = {sp.Symbol(k): v for k, v in data.items() if isinstance(v, int)}
    e = e.subs(sizes).doit()
    values = {}
    for k, v in data.items():
        for j, row in enumerate(v if isinstance(v, list) else []):
            if isinstance(row, list):
                values.update({sp.IndexedBase(k)[j + 1, m + 1]: x for m, x in enumerate(row)})
            else:
                values[sp.IndexedBase(k)[j + 1]] = row
    return e.subs(values).doit()


@pytest.mark.parametrize("case", sorted(CONJUGATE))
def test_conjugate_formulas_equal_the_exact_posteriors(case: str) -> None:
    src, data = CONJUGATE[case]
    model = compile_string(src, f"{case}.bgm").compiled.model
    (post,) = conjugate_posteriors(model)
    family, params = posterior_parameters(runtime_plan(conjugate_plan(model)), data)[post.latent]
    assert post.expr.family == family
    got = post.expr.args[1:]
    if family == "Dirichlet":
        values = [float(_numeric(a, data)) for a in got[0]]
        np.testing.assert_allclose(values, params["alpha"], rtol=1e-12)
        return
    want = list(params.values())
    np.testing.assert_allclose([float(_numeric(g, data)) for g in got], want, rtol=1e-12)


def test_the_coin_posterior_is_the_textbook_formula() -> None:
    (post,) = conjugate_posteriors(compile_file(ROOT / "examples" / "coin.bgm").compiled.model)
    i, n, y = sp.Symbol("i", integer=True), sp.Symbol("N"), sp.IndexedBase("y")
    total = sp.Sum(y[i], (i, 1, n))
    assert post.expr == density("Beta", sp.Symbol("theta"), 2 + total, 2 + n - total)


def test_a_model_without_a_conjugate_posterior_says_why(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(ROOT / "examples" / "eight_schools_noncentered.bgm")]) == 0
    out = capsys.readouterr().out
    assert "closed-form posterior: none (the latents enter the likelihood through " \
           "computed nodes (theta)" in out
    assert "theta: deterministic" in out and "mu: latent, continuous on real" in out


def test_names_with_underscores_print_as_the_model_writes_them() -> None:
    """sympy would print log_lam as log with the subscript lam, in text and in LaTeX."""
    src = ("model Rate\ndata N: int\ndata y: int<lower=0>[N]\nlog_lam ~ Normal(0, 1)\n"
           "for i in 1..N:\n    y[i] ~ Poisson(log_rate=log_lam)\n")
    program = compile_string(src, "rate.bgm")
    text = program.explain()
    assert "p(log_lam, y) = Normal(log_lam | 0, 1)" in text and "logₗₐₘ" not in text
    assert "log_rate = log_lam" in text
    assert r"\mathit{log\_lam}" in program.joint_latex() and "log_{lam}" not in \
        program.joint_latex()


def test_a_chain_is_summed_along_its_chain_not_per_plate_element() -> None:
    hmm = compile_file(ROOT / "examples" / "hidden_markov.bgm").explain()
    mixture = compile_file(ROOT / "examples" / "gaussian_mixture.bgm").explain()
    assert "z: summed out of the likelihood exactly (the forward algorithm along its chain)" \
        in hmm and "per element of its plate" not in hmm
    assert "(logsumexp over its values, per element of its plate)" in mixture
