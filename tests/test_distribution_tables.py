"""The compiler's distribution table (compiler/tables/distributions.py: names, parameterisations,
supports) and the runtime's (runtime/distributions.py: factories over
torch.distributions) must agree, since generated code calls the runtime's factory with
the parameters the compiler bound: the first parameterisation positionally, the others
by keyword."""
from __future__ import annotations

import inspect

import pytest
import torch

from compiler.tables.distributions import DISTRIBUTIONS
from runtime import distributions as rd

# Diffusion(...) is not a density factory: it is rt.Diffusion, a training objective
# checked by compiler/passes/diffusion.py. LKJCholesky also takes its dimension, which the
# code generator adds from the declared shape.
NOT_FACTORIES = {"Diffusion"}
EXTRA = {"LKJCholesky": ["dim"]}


def _factories() -> dict[str, object]:
    return {name: f for name, f in vars(rd).items()
            if inspect.isfunction(f) and name[:1].isupper() and f.__module__ == rd.__name__}


def test_every_compiler_distribution_has_a_runtime_factory_and_back() -> None:
    compiled = set(DISTRIBUTIONS) - NOT_FACTORIES
    assert compiled == set(_factories())


@pytest.mark.parametrize("name", sorted(set(DISTRIBUTIONS) - NOT_FACTORIES))
def test_the_factory_takes_the_parameters_the_compiler_binds(name: str) -> None:
    spec = DISTRIBUTIONS[name]
    expected: list[str] = []
    for form in spec.forms:
        expected += [p.name for p in form if p.name not in expected]
    params = inspect.signature(_factories()[name]).parameters
    assert list(params) == expected + EXTRA.get(name, [])
    first = [p.name for p in spec.forms[0]]
    later = [x for x in expected if x not in first]
    # the first form is passed positionally, so it has no default unless others exist;
    # every other form's parameters are keywords with a default of None
    for x in later:
        assert params[x].default is None, (name, x)


@pytest.mark.parametrize("name", sorted(d for d in DISTRIBUTIONS if d not in NOT_FACTORIES
                                        and DISTRIBUTIONS[d].event_rank == 0
                                        and not DISTRIBUTIONS[d].improper))
def test_discreteness_agrees(name: str) -> None:
    """A scalar distribution the compiler calls discrete draws integers in the runtime."""
    spec = DISTRIBUTIONS[name]
    values = {"real": 0.3, "positive": 2.0, "unit": 0.4, "int_nonneg": 5.0,
              "simplex": [0.2, 0.8]}
    if name in ("Uniform", "DiscreteUniform"):
        args = [torch.tensor(1.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)]
    else:
        args = [torch.tensor(values[p.support], dtype=torch.float64) for p in spec.forms[0]]
    dist = _factories()[name](*args)  # type: ignore[operator]
    draw = dist.sample((200,))
    is_integer = bool(torch.all(draw == torch.round(draw)))
    assert is_integer == spec.discrete, name
