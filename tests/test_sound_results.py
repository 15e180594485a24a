"""Results that would mislead are named: an improper latent is refused at check, a mode on
a boundary is warned about, a variational fit too far from the posterior gets its Pareto k,
heavy tails and ridges are flagged, and each hint printed applies to the model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiler.api import compile_string
from dsl.diagnostics import BgmError
from runtime.diagnostics import summarize
from runtime.errors import ModelError
from runtime.output import arviz

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCHOOLS = json.loads((EXAMPLES / "eight_schools.json").read_text())
CENTRED = (EXAMPLES / "eight_schools_centered.bgm").read_text()
NONCENTRED = (EXAMPLES / "eight_schools_noncentered.bgm").read_text()


def test_an_improper_latent_nothing_observes_is_an_error_at_check() -> None:
    with pytest.raises(BgmError) as err:
        compile_string("model F\ndata N: int\ndata y: real[N]\nmu ~ Normal(0, 1)\n"
                       "x ~ Flat()\nfor i in 1..N:\n    y[i] ~ Normal(mu, 1)\n", "f.bgm")
    text = str(err.value)
    assert "'x' has an improper prior (Flat) and no likelihood or factor depends on it" in text
    with pytest.raises(BgmError, match="'a' has an improper prior"):
        compile_string("a ~ Flat()\nb ~ Normal(a, 1)\n", "chain.bgm")


def test_an_improper_prior_above_observed_data_is_accepted() -> None:
    compile_string("data N: int\ndata y: real[N]\nmu ~ Flat()\nfor i in 1..N:\n"
                   "    theta[i] ~ Normal(mu, 1)\n    y[i] ~ Normal(theta[i], 1)\n", "h.bgm")


def test_a_map_on_the_boundary_of_a_scale_is_warned_about() -> None:
    fit = compile_string(NONCENTRED, "nc.bgm").fit(SCHOOLS, method="map")
    warned = " ".join(fit.warnings)
    assert "tau = " in warned and "is at the edge of the support" in warned
    assert "--method nuts" in warned
    assert float(fit.values["tau"]) < 1e-3


def test_a_map_in_the_interior_is_not_warned_about() -> None:
    program = compile_string("data N: int\ndata y: real[N]\nmu ~ Normal(0, 10)\n"
                             "s ~ HalfNormal(5)\nfor i in 1..N:\n    y[i] ~ Normal(mu, s)\n",
                             "m.bgm")
    fit = program.fit({"N": 5, "y": [1.0, 2.0, 0.5, 1.5, 3.0]}, method="map")
    assert fit.warnings == ()


def test_mean_field_advi_of_a_hierarchical_model_reports_pareto_k() -> None:
    fit = compile_string(CENTRED, "c.bgm").fit(SCHOOLS, method="advi")
    k = float(fit.idata.attrs["pareto_k"])
    assert k > 0.7
    _, warnings = fit.summary()
    assert any(w.startswith(f"Pareto k = {k:.3f} (> 0.667)") for w in warnings)


def _idata(posterior: dict[str, np.ndarray], **attrs: str):
    return arviz().from_dict(posterior=posterior, attrs=attrs)


def test_heavy_tails_are_flagged_without_library_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 200))
    x[1, 17] = 1e307
    x[0, 3] = -3e306
    text, warnings = summarize(_idata({"x": x, "y": rng.normal(size=(2, 200))}))
    row = next(line.split() for line in text.splitlines() if line.startswith("x "))
    mean = float(row[1])
    assert np.isfinite(mean) and mean == pytest.approx(np.mean(x / 1e307) * 1e307, rel=1e-3)
    assert np.isfinite(float(row[2]))  # sd
    heavy = [w for w in warnings if w.startswith("heavy tails")]
    assert heavy == [heavy[0]] and "x reaches 1e+307" in heavy[0] and "y reaches" not in heavy[0]


def test_a_ridge_is_named_and_the_tree_depth_hint_says_why() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1000, size=(2, 300))
    b = 0.5 - a + rng.normal(0, 0.01, size=(2, 300))
    idata = _idata({"a": a, "b": b, "c": rng.normal(size=(2, 300))})
    idata.add_groups({"sample_stats": {"reached_max_treedepth": np.ones((2, 300), bool)}})
    _, warnings = summarize(idata)
    assert any(w.startswith("a and b are correlated -1.000 in the posterior") for w in warnings)
    assert any("the ridge above makes trajectories long" in w for w in warnings)
    _, plain = summarize(_idata({"a": a, "c": rng.normal(size=(2, 300))}))
    assert not any("correlated" in w for w in plain)


RIDGE_HEAD = "data N: int\ndata y: real[N]\ndata x: real[N]\n"


@pytest.mark.parametrize(("body", "expected"), [
    ("a ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n    y[n] ~ Normal(a + b + x[n], 1)\n",
     "'a' and 'b' have improper priors and are read only as their sum (a + b)"),
    ("a ~ Flat()\nb ~ Flat()\nmu = -a + b\nfor n in 1..N:\n    y[n] ~ Normal(mu, 1)\n",
     "'a' and 'b' have improper priors and are read only as their difference (a - b)"),
])
def test_a_non_identified_sum_is_warned_about_at_check_with_both_names(
        body: str, expected: str) -> None:
    model = compile_string(RIDGE_HEAD + body, "r.bgm").compiled.model
    assert [d.message.split(":")[0] for d in model.warnings] == [expected]
    assert model.warnings[0].severity == "warning"
    assert [note.span.line for note in model.warnings[0].notes] == [4, 5]


@pytest.mark.parametrize("body", [
    # b scales x: the two are identified separately
    "a ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n    y[n] ~ Normal(a + b * x[n], 1)\n",
    # a proper prior on b pins the direction
    "a ~ Flat()\nb ~ Normal(0, 1)\nfor n in 1..N:\n    y[n] ~ Normal(a + b, 1)\n",
    # a + b in one likelihood and a - b in another identify both
    "a ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n    y[n] ~ Normal(a + b, 1)\n"
    "    x[n] ~ Normal(a - b, 1)\n",
    # a is also read on its own
    "a ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n    y[n] ~ Normal(a + b, exp(a))\n",
    # a bounded Flat() is a proper uniform
    "a: real<lower=0, upper=1> ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n"
    "    y[n] ~ Normal(a + b, 1)\n",
])
def test_identified_sums_are_not_warned_about(body: str) -> None:
    assert compile_string(RIDGE_HEAD + body, "r.bgm").compiled.model.warnings == []


def test_bgmc_check_prints_the_ridge_warning_with_a_caret_and_exits_0(tmp_path: Path) -> None:
    import subprocess
    import sys
    path = tmp_path / "r.bgm"
    path.write_text(RIDGE_HEAD + "a ~ Flat()\nb ~ Flat()\nfor n in 1..N:\n"
                    "    y[n] ~ Normal(a + b, 1)\n")
    done = subprocess.run([sys.executable, "-m", "compiler.cli", "check", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"{path}:7:19: warning: 'a' and 'b'" in done.stderr
    assert "   |                   ^^^^^" in done.stderr
    assert "hint: give 'a' or 'b' a proper prior" in done.stderr


def test_the_divergence_hint_names_what_to_non_centre_only_when_it_applies() -> None:
    rng = np.random.default_rng(2)
    post = {"mu": rng.normal(size=(2, 100)), "tau": rng.gamma(2, size=(2, 100))}
    diverging = np.zeros((2, 100), bool)
    diverging[0, :5] = True
    with_centred = _idata(post, centred="theta (scale tau)")
    with_centred.add_groups({"sample_stats": {"diverging": diverging}})
    _, warnings = summarize(with_centred)
    assert any("reparameterise non-centred: theta (scale tau)" in w for w in warnings)
    plain = _idata(post)
    plain.add_groups({"sample_stats": {"diverging": diverging}})
    _, warnings = summarize(plain)
    assert any("raise --adapt-delta" in w for w in warnings)
    assert not any("non-centred" in w for w in warnings)


def test_the_centred_latents_are_found_by_the_compiler() -> None:
    assert compile_string(CENTRED, "c.bgm").model_class().centred == (("theta", "tau"),)
    assert not hasattr(compile_string(NONCENTRED, "nc.bgm").model_class(), "centred")


def test_the_init_hint_says_whether_a_smaller_radius_can_help() -> None:
    impossible = compile_string("x ~ Normal(0, 1)\nfactor log(-1 - x * x)\n", "u.bgm")
    with pytest.raises(ModelError, match="not finite at the centre either") as err:
        impossible.fit({}, method="map")
    assert "--init 0.5" not in str(err.value)
    steep = compile_string("data N: int\ndata y: int[N]\nfor i in 1..N:\n"
                           "    x[i] ~ Normal(0, 1)\n"
                           "    y[i] ~ Poisson(exp(exp(exp(exp(x[i])))))\n", "p.bgm")
    with pytest.raises(ModelError, match="finite at the centre .*--init 0.5"):
        steep.fit({"N": 40, "y": [3] * 40}, method="map")
