"""Messages a newcomer met, each saying what is actually wrong and what to do.

* a distribution or function named as another language names it (Gaussian, inv_gamma,
  bernoulli_logit, logsumexp) suggests bgm's name, not only a close spelling;
* calling an undeclared net names the model's nets;
* prior draws of a model with a net say that the net's weights must be fitted first,
  not that it is a point parameter ('param');
* a MAP fit that stops without a vanishing gradient says why: a Laplace prior at its
  centre only when the model has one there, else the unknown that runs off to the edge
  of its support or the kink of another function.

The front end's wording is also pinned by the golden files tests/broken/
unknown_distribution_synonym, unknown_distribution_logit, undeclared_net and
undeclared_net_typo (tests/test_broken_models.py).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from compiler.api import compile_string
from compiler.tables import synonyms
from compiler.tables.distributions import DISTRIBUTIONS
from compiler.tables.functions import FUNCTIONS
from dsl.diagnostics import BgmError
from runtime.errors import DataError, ModelError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def diagnostic(src: str) -> tuple[str, str | None]:
    """The message and hint of the one error `src` has."""
    with pytest.raises(BgmError) as info:
        compile_string(src, "m.bgm")
    (d,) = info.value.diagnostics
    return d.message, d.hint


# ---- 1. names from other languages


def test_every_synonym_names_a_known_distribution_or_function() -> None:
    for synonym, name in synonyms.DISTRIBUTION_SYNONYMS.items():
        assert re.match(r"\w+", name)[0] in DISTRIBUTIONS, (synonym, name)
        assert synonym not in DISTRIBUTIONS, synonym
    for synonym, name in synonyms.FUNCTION_SYNONYMS.items():
        assert name in FUNCTIONS, (synonym, name)
        assert synonym not in FUNCTIONS, synonym


@pytest.mark.parametrize("written, suggested", [
    ("Gaussian", "Normal"), ("normal", "Normal"), ("gaussian", "Normal"),
    ("binomial", "Binomial"), ("BINOMIAL", "Binomial"),
    ("half_normal", "HalfNormal"), ("halfnormal", "HalfNormal"),
    ("inv_gamma", "InverseGamma"),
    ("MvNormal", "MultivariateNormal"), ("multi_normal", "MultivariateNormal"),
    ("MultivariateGaussian", "MultivariateNormal"),
    ("lkj_corr_cholesky", "LKJCholesky"),
    ("Student", "StudentT"), ("student_t", "StudentT"), ("t", "StudentT"),
    ("neg_binomial", "NegativeBinomial"), ("NegBinomial", "NegativeBinomial"),
    ("bernoulli_logit", "Bernoulli(logits=...)"),
    ("categorical_logit", "Categorical(logits=...)"),
    ("Exp", "Exponential"), ("Unif", "Uniform"), ("Chi2", "ChiSquare"),
    ("Normall", "Normal"),  # a typo: difflib, as before
])
def test_an_unknown_distribution_suggests_the_known_name(written: str, suggested: str) -> None:
    message, hint = diagnostic(f"data y: real\ny ~ {written}(1, 2)\n")
    assert message == f"unknown distribution '{written}'"
    assert hint == f"did you mean '{suggested}'?"


def test_an_unknown_distribution_unlike_any_keeps_its_hint() -> None:
    message, hint = diagnostic("data y: real\ny ~ Foo(1, 2)\n")
    assert (message, hint) == ("unknown distribution 'Foo'",
                               "distributions are capitalised: Normal, Gamma, Bernoulli, ...")


@pytest.mark.parametrize("written, suggested", [
    ("logsumexp", "log_sum_exp"), ("std", "sd"), ("expit", "inv_logit"),
    ("Exp", "exp"),  # not Exponential: a function is called here
    ("exq", "exp"), ("Gaussian", "Normal"),
])
def test_an_unknown_function_suggests_the_known_name(written: str, suggested: str) -> None:
    message, hint = diagnostic(f"data x: real[3]\ns = {written}(x)\n")
    assert message == f"unknown function '{written}'"
    assert hint == f"did you mean '{suggested}'?"


def test_synonyms_ignore_case_and_underscores() -> None:
    assert synonyms.known_distribution("Half_Cauchy") == "HalfCauchy"
    assert synonyms.known_distribution("nothing_like_it") is None
    assert synonyms.known_function("LogSumExp") == "log_sum_exp"


# ---- 2. an undeclared net

NETS = """\
data N: int
data x: real[N, 3]
data y: real[N, 1]
net f = MLP(3, 16, 1, act=relu)
net h = MLP(3, 16, 1, act=relu)
y ~ Normal({call}(x), 1)
"""


def test_an_undeclared_net_names_the_models_nets() -> None:
    assert diagnostic(NETS.format(call="g")) == (
        "unknown function 'g'; the model's nets are f, h", None)


def test_a_misspelt_net_is_suggested() -> None:
    message, hint = diagnostic(NETS.replace("net f", "net enc").format(call="encc"))
    assert message == "unknown function 'encc'; the model's nets are enc, h"
    assert hint == "did you mean 'enc'?"


def test_without_nets_an_unknown_function_says_nothing_of_nets() -> None:
    assert diagnostic("data x: real[3]\ns = g(x)\n") == ("unknown function 'g'", None)


# ---- 3. prior draws of a model with a net

NET_REGRESSION = """\
data N: int
data x: real[N, 2]
data y: real[N, 1]
net f = MLP(2, 8, 1)
sigma ~ HalfNormal(1)
for i in 1..N:
    y[i] ~ Normal(f(x[i]), sigma)
"""


def net_data() -> dict:
    rng = np.random.default_rng(0)
    return {"N": 10, "x": rng.normal(size=(10, 2)).tolist(),
            "y": rng.normal(size=(10, 1)).tolist()}


def test_prior_draws_of_a_model_with_a_net_say_to_fit_the_net_first() -> None:
    program = compile_string(NET_REGRESSION, "m.bgm")
    with pytest.raises(ModelError) as info:
        program.sample(net_data(), n=5)
    text = str(info.value)
    assert text.startswith("m.bgm:4: cannot draw from the prior: f is a net, whose weights "
                           "have no prior: fit them first")
    assert "bgmc fit m.bgm" in text and "--fit fit.json --prior" in text
    assert "point parameter" not in text and "'param'" not in text


def test_the_fitted_net_then_gives_prior_draws() -> None:
    program = compile_string(NET_REGRESSION, "m.bgm")
    fit = program.fit(net_data(), method="map", max_iter=50)
    given = {k: np.asarray(v)[None] for k, v in fit.values.items()}
    draws = program.sample(net_data(), n=5, given=given, prior=True)
    assert draws["y"].shape == (5, 10, 1)


def test_prior_draws_of_a_model_with_a_param_still_name_the_param() -> None:
    program = compile_string("data N: int\nmu ~ Normal(0, 1)\nparam s: positive\n"
                             "y: real[N] ~ Normal(mu, s)\n", "m.bgm")
    with pytest.raises(ModelError, match="m.bgm:3: cannot draw from the prior: s is a point "
                                         r"parameter \('param', no prior\); fit first") as err:
        program.sample({"N": 3}, n=5)
    assert "give each 'param' a prior ('~')" in str(err.value)


def test_prior_draws_from_generated_code_call_a_net_a_net() -> None:
    """The generated sample_prior says the same as the CLI: a net has weights, not a
    'param' to be given a prior."""
    code = compile_string(NET_REGRESSION, "m.bgm").python
    messages = [node.value for node in ast.walk(ast.parse(code))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and node.value.startswith("cannot draw from the prior")]
    assert messages == ["cannot draw from the prior: f is a net (weights without a prior); "
                        "fit first and draw the predictive at the fitted values ('bgmc sample "
                        "--fit FIT.json', FIT.json from 'bgmc fit')"]


def test_explain_draws_its_products_whatever_sympy_was_told_at_import() -> None:
    from sympy.printing.pretty.pretty_symbology import pretty_use_unicode  # noqa: PLC0415

    from compiler.teaching.explain import explain  # noqa: PLC0415
    before = pretty_use_unicode(False)
    try:
        text = explain(compile_string(NET_REGRESSION, "m.bgm").compiled.model)
        coin = explain(compile_string("data N: int\ntheta ~ Beta(2, 2)\nfor i in 1..N:\n"
                                      "    y[i] ~ Bernoulli(theta)\n", "c.bgm").compiled.model)
        assert "─┬─┬─" in coin and text
        assert pretty_use_unicode() is False  # restored
    finally:
        pretty_use_unicode(before)


# ---- 4. why a MAP fit did not converge


def test_a_laplace_prior_at_its_centre_is_named() -> None:
    with open(EXAMPLES / "logistic_regression_l1.json") as f:
        data = {**json.load(f), "b": 0.1}
    program = compile_string((EXAMPLES / "logistic_regression_l1.bgm").read_text(),
                             "logistic_regression_l1.bgm")
    fit = program.fit(data, method="map", seed=3, device="cpu")
    assert not fit.converged
    message = fit.estimate.message
    assert message in fit.warnings
    assert "a Laplace prior at its centre" in message
    assert "kink at w[3], w[5] in prior w" in message


def test_a_model_without_laplace_is_not_told_of_one() -> None:
    """The centred eight schools: the joint density grows without bound as tau -> 0."""
    program = compile_string((EXAMPLES / "eight_schools_centered.bgm").read_text(),
                             "eight_schools_centered.bgm")
    fit = program.fit(str(EXAMPLES / "eight_schools.json"), method="map", device="cpu")
    assert not fit.converged
    message = fit.estimate.message
    assert message in fit.warnings
    assert "Laplace" not in message
    assert "keeps increasing as tau runs off towards the edge of the support" in message


def test_a_kink_of_another_function_is_not_called_laplace() -> None:
    program = compile_string("data N: int\ndata y: real[N]\nmu ~ Normal(0, 10)\n"
                             "for i in 1..N:\n    factor(-abs(y[i] - mu))\n", "m.bgm")
    fit = program.fit({"N": 5, "y": [1.0, 2.0, 3.0, 4.0, 10.0]}, method="map", device="cpu")
    assert not fit.converged
    message = fit.estimate.message
    assert "Laplace" not in message
    assert "kink at mu in factor" in message and "abs" in message


# ---- the second newcomer trial


CATEGORICAL = ("data N: int\ndata K: int\ndata y: int[N]\np ~ Dirichlet(ones(K))\n"
               "y ~ Categorical(p)\n")


@pytest.mark.parametrize("labels, shown", [([0, 1, 2, 1], "'y[1]' = 0"),
                                           ([1, 4, 2, 1], "'y[2]' = 4")])
def test_categorical_labels_outside_1_to_k_are_data_errors(labels, shown) -> None:
    """0-based labels (Python, PyMC) are the likeliest mistake; the latent p's length K
    bounds them though p is not data."""
    program = compile_string(CATEGORICAL, "cat.bgm")
    with pytest.raises(DataError, match=rf"data {re.escape(shown)} is outside the support "
                                        r"of its distribution \(integers >= 1 and <= 3\) "
                                        "at cat.bgm:5"):
        program.fit({"N": 4, "K": 3, "y": labels}, method="map")


def test_stan_flags_that_do_not_apply_are_refused(tmp_path, capsys) -> None:
    from compiler.app.cli import main  # noqa: PLC0415
    model = tmp_path / "m.bgm"
    model.write_text("data N: int\ndata y: real[N]\nmu ~ Normal(0, 1)\n"
                     "for i in 1..N:\n    y[i] ~ Normal(mu, 1)\n")
    data = tmp_path / "d.json"
    data.write_text('{"N": 2, "y": [0.1, 0.2]}')
    assert main(["fit", str(model), "--data", str(data), "--method", "nuts", "--iter",
                 "100"]) == 1
    assert "--iter counts optimiser iterations" in capsys.readouterr().err


def test_a_model_without_latents_names_its_method() -> None:
    fit = compile_string("data N: int\ndata y: real[N]\ny ~ Normal(0, 1)\n", "e.bgm").fit(
        {"N": 2, "y": [0.5, 1.0]}, method="map")
    assert fit.report[0].startswith("MAP of E: log joint density")
    assert fit.point_report()["method"] == "map"


def test_summary_of_a_point_fit_says_which_file_it_reads(tmp_path) -> None:
    from compiler.app.userfiles import read_fit  # noqa: PLC0415
    path = tmp_path / "m.json"
    path.write_text('{"estimates": {}}')
    with pytest.raises(ModelError, match="is point estimates; this command reads the .nc"):
        read_fit(str(path))
