"""The hand-written log densities equal torch.distributions' to rounding, for tensor and
Python-number arguments (numbers must never drop to float32)."""
import math

import pytest
import torch

from runtime import distributions as bd

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(0)
X = torch.rand(50, generator=g, dtype=torch.float64) * 0.98 + 0.01  # in (0, 1)
P = torch.rand(50, generator=g, dtype=torch.float64) * 3 + 0.2
R = torch.randn(50, generator=g, dtype=torch.float64)

CASES = [
    ("Normal", (R, P), (1.3, 0.7), torch.distributions.Normal, R),
    ("HalfNormal", (P,), (2.5,), torch.distributions.HalfNormal, P),
    ("Cauchy", (R, P), (0.1, 2.5), torch.distributions.Cauchy, R),
    ("HalfCauchy", (P,), (5.0,), torch.distributions.HalfCauchy, P),
    ("StudentT", (P, R, P), (3.0, 0.5, 2.0), torch.distributions.StudentT, R),
    ("Laplace", (R, P), (0.3, 1.1), torch.distributions.Laplace, R),
    ("Exponential", (P,), (0.7,), torch.distributions.Exponential, P),
    ("Gamma", (P, P), (2.0, 3.0), torch.distributions.Gamma, P),
    ("InverseGamma", (P, P), (2.0, 3.0), torch.distributions.InverseGamma, P),
    ("Beta", (P, P), (2.0, 5.0), torch.distributions.Beta, X),
    ("LogNormal", (R, P), (0.1, 0.9), torch.distributions.LogNormal, P),
]


@pytest.mark.parametrize("name,tensor_args,number_args,reference,value", CASES,
                         ids=[c[0] for c in CASES])
def test_fast_log_density_matches_torch(name, tensor_args, number_args, reference, value):
    for args in (tensor_args, number_args):
        ours = getattr(bd, name)(*args).log_prob(value)
        ref_args = [torch.as_tensor(a, dtype=torch.float64) for a in args]
        theirs = reference(*ref_args, validate_args=False).log_prob(value)
        assert ours.dtype == torch.float64
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12), name


def test_bernoulli_both_parameterisations():
    y = (X > 0.5).double()
    ref = torch.distributions.Bernoulli(probs=X).log_prob(y)
    assert torch.allclose(bd.Bernoulli(X).log_prob(y), ref, atol=1e-12)
    assert torch.allclose(bd.Bernoulli(logits=torch.logit(X)).log_prob(y), ref, atol=1e-12)
    ref_num = torch.distributions.Bernoulli(logits=torch.tensor(0.3)).log_prob(y)
    assert torch.allclose(bd.Bernoulli(logits=0.3).log_prob(y), ref_num, atol=1e-12)


def test_bernoulli_logits_value_and_gradient_hold_at_extreme_logits():
    """log sigmoid((2y - 1) l) is y l - softplus(l) for y in {0, 1}, with its gradient,
    and stays finite where exp(l) overflows."""
    logits = torch.tensor([-800.0, -40.0, -1.5, 0.0, 2.0, 35.0, 800.0], requires_grad=True)
    for y in (torch.zeros(7), torch.ones(7)):
        ours = bd.Bernoulli(logits=logits).log_prob(y)
        ref = torch.distributions.Bernoulli(logits=logits).log_prob(y)
        assert torch.isfinite(ours).all() and torch.allclose(ours, ref, atol=1e-12, rtol=1e-12)
        (g_ours,) = torch.autograd.grad(ours.sum(), logits)
        (g_ref,) = torch.autograd.grad(ref.sum(), logits)
        assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_sampling_is_delegated_to_torch():
    d = bd.Normal(torch.zeros(3), 1.0)
    assert d.expand(torch.Size([4, 3])).sample().shape == (4, 3)
    assert d.event_shape == torch.Size([])


def test_covariance_that_is_not_positive_definite_has_zero_density_not_an_exception() -> None:
    """One batch element (a chain) at a non-PD covariance gets -inf and no gradient; the
    others are exactly torch's density with torch's gradient."""
    good = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    sigma = torch.stack([good, bad]).requires_grad_()
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    lp = bd.MultivariateNormal(torch.zeros(2, 2, dtype=torch.float64), sigma).log_prob(x)
    reference = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64),
                                                       good).log_prob(x)
    assert lp[0].item() == pytest.approx(reference.item(), abs=1e-12)
    assert lp[1].item() == -math.inf
    lp[0].backward()
    assert torch.isfinite(sigma.grad).all() and (sigma.grad[1] == 0).all()
