"""What other languages call bgm's distributions and functions, for "did you mean" hints.

A newcomer writes the name they know from Stan, PyMC, NumPyro, BUGS, R or SciPy:
`Gaussian`, `normal`, `inv_gamma`, `multi_normal`, `lkj_corr_cholesky`, `bernoulli_logit`.
Spelling distance (difflib) finds typos but not these, so the compiler looks a name up
here first. A name matches when it equals a known name or a synonym below once case and
underscores are ignored (`half_normal`, `halfnormal`, `BINOMIAL`). A suggestion may carry
the keyword that picks a parameterisation: Stan's `bernoulli_logit` is
`Bernoulli(logits=...)` here. Every suggestion names an entry of
compiler/tables/distributions.py or compiler/tables/functions.py (checked by
tests/test_newcomer_messages.py).
"""
from __future__ import annotations

from compiler.tables.distributions import DISTRIBUTIONS
from compiler.tables.functions import FUNCTIONS

# Keys are written as other languages spell them; they are compared without case and
# underscores.
DISTRIBUTION_SYNONYMS: dict[str, str] = {
    "Gaussian": "Normal",
    "norm": "Normal",
    "dnorm": "Normal",
    "std_normal": "Normal(0, 1)",
    "HalfGaussian": "HalfNormal",
    "InvGamma": "InverseGamma",
    "MvNormal": "MultivariateNormal",
    "MVN": "MultivariateNormal",
    "multi_normal": "MultivariateNormal",
    "MultivariateGaussian": "MultivariateNormal",
    "multi_normal_cholesky": "MultivariateNormal(mu, L=...)",
    "multi_normal_prec": "MultivariateNormal(mu, precision=...)",
    "lkj_corr_cholesky": "LKJCholesky",
    "LKJCorrCholesky": "LKJCholesky",
    "Student": "StudentT",
    "StudentsT": "StudentT",
    "t": "StudentT",
    "NegBinomial": "NegativeBinomial",
    "NegBin": "NegativeBinomial",
    "nbinom": "NegativeBinomial",
    "neg_binomial_2": "NegativeBinomial",
    "neg_binomial_2_log": "NegativeBinomial(log_mu=..., phi=...)",
    "binom": "Binomial",
    "binomial_logit": "Binomial(n, logits=...)",
    "bernoulli_logit": "Bernoulli(logits=...)",
    "categorical_logit": "Categorical(logits=...)",
    "poisson_log": "Poisson(log_rate=...)",
    "pois": "Poisson",
    "Exp": "Exponential",
    "Unif": "Uniform",
    "Chi2": "ChiSquare",
    "ChiSquared": "ChiSquare",
    "chisq": "ChiSquare",
    "double_exponential": "Laplace",
}

FUNCTION_SYNONYMS: dict[str, str] = {
    "logsumexp": "log_sum_exp",
    "std": "sd",
    "stdev": "sd",
    "var": "variance",
    "expit": "inv_logit",
    "logistic": "inv_logit",
    "log_inv_logit": "log_sigmoid",
    "gammaln": "lgamma",
    "loggamma": "lgamma",
    "ln": "log",
    "power": "pow",
    "minimum": "fmin",
    "maximum": "fmax",
    "cumulative_sum": "cumsum",
    "std_normal_cdf": "Phi",
    "identity_matrix": "eye",
    "num_elements": "length",
    "size": "length",
    "len": "length",
}


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def _index(known: dict[str, object], synonyms: dict[str, str]) -> dict[str, str]:
    index = {_key(name): name for name in known}
    for synonym, name in synonyms.items():
        index.setdefault(_key(synonym), name)
    return index


_DISTRIBUTIONS = _index(DISTRIBUTIONS, DISTRIBUTION_SYNONYMS)
_FUNCTIONS = _index(FUNCTIONS, FUNCTION_SYNONYMS)


def known_distribution(name: str) -> str | None:
    """The distribution (maybe with the keyword of a parameterisation) that other
    languages call `name`, or None."""
    return _DISTRIBUTIONS.get(_key(name))


def known_function(name: str) -> str | None:
    """The built-in function that other languages call `name`, or None."""
    return _FUNCTIONS.get(_key(name))
