"""The distribution table: bgm's names and parameterisations mapped onto torch.distributions.

Generated code calls these factories with the first parameterisation positionally and
the others by keyword, exactly as compiler/tables/distributions.py lists them (a test checks
the two tables agree). Argument validation is off: latents are constrained by
construction, and data is checked against supports when it is loaded. A computed
argument can still leave its support at some point of a trajectory (a shape a - b < 0, a
covariance that is not positive definite): the log density there is -inf or NaN, for
that batch element (chain) only, which the engines treat as a rejected point, as Stan
does; never an exception, and never a finite value from a formula used outside its
domain (`_guard`).
Labels are 1-based (rule 19): Categorical takes values 1..K.
"""
from __future__ import annotations

import math

import torch
from torch import distributions as td
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from runtime import lpdf
from runtime.lpdf import Fast
from runtime.ops import cholesky_failed

_NO_CHECK = {"validate_args": False}
_NO_SHAPE = torch.Size()


class _Guarded:
    """A distribution whose log_prob is -inf where its arguments are outside their
    support (`ok` is False), broadcast over its batch; everything else is delegated."""

    def __init__(self, dist, ok):
        self._dist = dist
        self._ok = ok

    def log_prob(self, value):
        lp = self._dist.log_prob(value)
        return torch.where(self._ok, lp, -math.inf)

    def __getattr__(self, name):  # sample, expand, event_shape, support, ...
        if name in ("_dist", "_ok"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._dist, name)


def _ok(*checks, event: bool = False):
    """The mask of batch elements whose arguments pass their checks ((value, test) pairs;
    `event`: the tests apply to every element of the last dim), None when every argument
    is a Python number that passes (nothing to guard), False when one fails."""
    ok = None
    for value, test in checks:
        if isinstance(value, torch.Tensor):
            passed = test(value)
            if event:
                passed = passed.all(-1)
        else:
            if bool(test(torch.as_tensor(value))):
                continue
            passed = torch.tensor(False)
        ok = passed if ok is None else ok & passed
    return ok


def _guard(dist, *checks, event: bool = False):
    ok = _ok(*checks, event=event)
    return dist if ok is None else _Guarded(dist, ok)


def _positive(x):
    return x > 0


def _nonnegative(x):
    return x >= 0


def _probability(x):
    return (x >= 0) & (x <= 1)


def Normal(mu, sigma):
    return Fast(lambda: td.Normal(mu, sigma, **_NO_CHECK), lpdf.normal(mu, sigma))


def HalfNormal(sigma):
    return Fast(lambda: td.HalfNormal(sigma, **_NO_CHECK), lpdf.half_normal(sigma))


def Cauchy(mu, sigma):
    return Fast(lambda: td.Cauchy(mu, sigma, **_NO_CHECK), lpdf.cauchy(mu, sigma))


def HalfCauchy(sigma):
    return Fast(lambda: td.HalfCauchy(sigma, **_NO_CHECK), lpdf.half_cauchy(sigma))


def StudentT(nu, mu, sigma):
    return Fast(lambda: td.StudentT(nu, mu, sigma, **_NO_CHECK), lpdf.student_t(nu, mu, sigma))


def Laplace(mu, b):
    return Fast(lambda: td.Laplace(mu, b, **_NO_CHECK), lpdf.laplace(mu, b))


def Gumbel(mu, beta):
    return td.Gumbel(mu, beta, **_NO_CHECK)


def Logistic(mu, sigma):
    mu, sigma = broadcast_all(mu, sigma)
    base = td.Uniform(torch.zeros_like(mu), torch.ones_like(mu), **_NO_CHECK)
    return _guard(td.TransformedDistribution(
        base, [td.SigmoidTransform().inv, td.AffineTransform(mu, sigma)], **_NO_CHECK),
        (sigma, _positive))


def Exponential(beta):
    return Fast(lambda: td.Exponential(beta, **_NO_CHECK), lpdf.exponential(beta))


def Gamma(alpha, beta):
    return Fast(lambda: td.Gamma(alpha, beta, **_NO_CHECK), lpdf.gamma(alpha, beta))


def InverseGamma(alpha, beta):
    return Fast(lambda: td.InverseGamma(alpha, beta, **_NO_CHECK),
                lpdf.inverse_gamma(alpha, beta))


def Beta(alpha, beta):
    return Fast(lambda: td.Beta(alpha, beta, **_NO_CHECK), lpdf.beta(alpha, beta))


def Uniform(alpha, beta):
    return td.Uniform(alpha, beta, **_NO_CHECK)


def LogNormal(mu, sigma):
    return Fast(lambda: td.LogNormal(mu, sigma, **_NO_CHECK), lpdf.log_normal(mu, sigma))


def Weibull(alpha, sigma):
    return _guard(td.Weibull(sigma, alpha, **_NO_CHECK), (alpha, _positive),
                  (sigma, _positive))


def ChiSquare(nu):
    return _guard(td.Chi2(nu, **_NO_CHECK), (nu, _positive))


def Pareto(y_min, alpha):
    return td.Pareto(y_min, alpha, **_NO_CHECK)


class _Improper(td.Distribution):
    """A flat density (0 on the log scale) on the real line or on (0, inf)."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, support, like: torch.Tensor | None = None):
        self._support = support
        super().__init__(torch.Size(), validate_args=False)

    @property
    def support(self):  # type: ignore[override]
        return self._support

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(value)

    def expand(self, batch_shape, _instance=None):
        return self


def Flat():
    return _Improper(constraints.real)


def HalfFlat():
    return _Improper(constraints.positive)


def Bernoulli(p=None, logits=None):
    lp = lpdf.bernoulli_logits(logits) if logits is not None else lpdf.bernoulli_probs(p)
    return Fast(lambda: td.Bernoulli(probs=p, logits=logits, **_NO_CHECK), lp)


def Binomial(n, p=None, logits=None):
    d = td.Binomial(total_count=n, probs=p, logits=logits, **_NO_CHECK)
    return d if p is None else _guard(d, (p, _probability))


def Poisson(rate=None, log_rate=None):
    if log_rate is not None:
        return _LogPoisson(log_rate)
    return _guard(td.Poisson(rate, **_NO_CHECK), (rate, _nonnegative))


class _LogPoisson(td.Poisson):
    """Poisson parameterised by its log rate: log_prob stays finite for large |log_rate|."""

    def __init__(self, log_rate):
        self.log_rate = torch.as_tensor(log_rate)
        super().__init__(self.log_rate.exp(), validate_args=False)

    def log_prob(self, value):
        return value * self.log_rate - self.rate - torch.lgamma(value + 1)

    def expand(self, batch_shape, _instance=None):
        return _LogPoisson(self.log_rate.expand(batch_shape))


class _NegativeBinomial2(td.Distribution):
    """Stan's neg_binomial_2(mu, phi): mean mu, variance mu + mu^2 / phi."""

    arg_constraints = {"mu": constraints.positive, "phi": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, log_mu, phi):
        self.log_mu, self.phi = broadcast_all(log_mu, phi)
        super().__init__(self.phi.shape, validate_args=False)

    def log_prob(self, y):
        phi, log_mu = self.phi, self.log_mu
        log_mu_phi = torch.logaddexp(log_mu, torch.log(phi))
        return (torch.lgamma(y + phi) - torch.lgamma(y + 1) - torch.lgamma(phi)
                + phi * (torch.log(phi) - log_mu_phi) + y * (log_mu - log_mu_phi))

    def sample(self, sample_shape=_NO_SHAPE):
        shape = torch.Size(sample_shape) + self.batch_shape
        rate = td.Gamma(self.phi.expand(shape), (self.phi / self.log_mu.exp()).expand(shape))
        return torch.poisson(rate.sample())

    def expand(self, batch_shape, _instance=None):
        return _NegativeBinomial2(self.log_mu.expand(batch_shape), self.phi.expand(batch_shape))


def NegativeBinomial(mu=None, phi=None, log_mu=None):
    if log_mu is None:
        mu, phi = broadcast_all(mu, phi)
        log_mu = torch.log(mu)
    return _NegativeBinomial2(log_mu, phi)


class _OneBasedCategorical(td.Categorical):
    """Categorical over 1..K (bgm's labels are 1-based, as in Stan and BUGS)."""

    def log_prob(self, value):
        return super().log_prob(torch.as_tensor(value).long() - 1)

    def sample(self, sample_shape=_NO_SHAPE):
        return super().sample(sample_shape) + 1

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance or _OneBasedCategorical.__new__(
            _OneBasedCategorical))
        return new


def Categorical(p=None, logits=None):
    d = _OneBasedCategorical(probs=p, logits=logits, validate_args=False)
    return d if p is None else _guard(d, (p, _nonnegative), event=True)


class _DiscreteUniform(td.Distribution):
    """Uniform over the integers lower..upper (inclusive)."""

    support = constraints.integer_interval(0, 1)
    arg_constraints: dict = {}

    def __init__(self, lower, upper):
        # a Python number becomes float64, not torch's float32 default, on the device of
        # the other bound when that one is a tensor (a literal bound with a data bound)
        device = next((b.device for b in (lower, upper) if isinstance(b, torch.Tensor)), None)
        lower, upper = (torch.as_tensor(b, dtype=torch.float64 if isinstance(b, float)
                                        else None, device=device) for b in (lower, upper))
        self.lower, self.upper = torch.broadcast_tensors(lower, upper)
        super().__init__(self.lower.shape, validate_args=False)

    def log_prob(self, value):
        value = torch.as_tensor(value)
        inside = (value >= self.lower) & (value <= self.upper)
        floats = [t.dtype for t in (value, self.lower) if t.is_floating_point()]
        dtype = floats[0] if floats else torch.float64
        for other in floats[1:]:
            dtype = torch.promote_types(dtype, other)
        size = (self.upper - self.lower + 1).to(dtype)
        return torch.where(inside, -torch.log(size), torch.full_like(size, -math.inf))

    def sample(self, sample_shape=_NO_SHAPE):
        shape = torch.Size(sample_shape) + self.batch_shape
        u = torch.rand(shape, device=self.lower.device)
        return self.lower + torch.floor(u * (self.upper - self.lower + 1)).long()

    def expand(self, batch_shape, _instance=None):
        return _DiscreteUniform(self.lower.expand(batch_shape), self.upper.expand(batch_shape))


def DiscreteUniform(lower, upper):
    return _DiscreteUniform(lower, upper)


def Dirichlet(alpha):
    return _guard(td.Dirichlet(alpha, **_NO_CHECK), (alpha, _positive), event=True)


class _NotPositiveDefinite(td.MultivariateNormal):
    """A MultivariateNormal some of whose covariance matrices were not positive definite.

    A sampler's trajectory can reach a point where a computed covariance (a GP kernel
    with a huge amplitude, say) fails its Cholesky factorisation in floating point. That
    point has zero density: its log density is -inf (NUTS records a divergence) for the
    failed batch elements only, instead of an exception that would stop every chain.
    """

    def __init__(self, mu, scale_tril, failed):
        super().__init__(mu, scale_tril=scale_tril, **_NO_CHECK)
        self._failed = failed

    def log_prob(self, value):
        lp = super().log_prob(value)
        return torch.where(self._failed, torch.full_like(lp, -math.inf), lp)

    def rsample(self, sample_shape=_NO_SHAPE):
        from runtime.errors import ModelError  # noqa: PLC0415
        raise ModelError("MultivariateNormal: the covariance matrix is not positive definite")


def MultivariateNormal(mu, Sigma=None, L=None, precision=None):
    if Sigma is None and precision is None:
        return td.MultivariateNormal(mu, scale_tril=L, **_NO_CHECK)
    matrix = Sigma if Sigma is not None else torch.as_tensor(precision)
    if matrix.device.type == "meta":  # shapes only: nothing to factorise
        return td.MultivariateNormal(mu, covariance_matrix=Sigma, precision_matrix=precision,
                                     **_NO_CHECK)
    if Sigma is not None:
        L, failed = cholesky_failed(Sigma)  # one factorisation on the usual path
    else:  # torch's own conversion (_precision_to_scale_tril), without raising
        flipped, failed = cholesky_failed(torch.flip(matrix, (-2, -1)))
        inverse = torch.transpose(torch.flip(flipped, (-2, -1)), -2, -1)
        eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        L = torch.linalg.solve_triangular(inverse, eye, upper=False)
    if not bool(failed.any()):
        return td.MultivariateNormal(mu, scale_tril=L, **_NO_CHECK)
    return _NotPositiveDefinite(mu, L, failed)


def LKJCholesky(eta, dim):
    ok = _ok((eta, _positive))
    if ok is None:
        return td.LKJCholesky(dim, eta, **_NO_CHECK)
    # torch validates the Beta it builds from eta (a ValueError): build it from a valid eta
    safe = torch.where(ok, eta, torch.ones_like(eta)) if isinstance(eta, torch.Tensor) else 1.0
    return _Guarded(td.LKJCholesky(dim, safe, **_NO_CHECK), ok)


TABLE = {name: obj for name, obj in dict(globals()).items()
         if name[:1].isupper() and callable(obj) and not name.startswith("_")}
