"""Every example's generated code runs on the meta device.

A meta tensor has a shape and a dtype but no values, and torch refuses to combine it with
a tensor on another device or to copy it to the host. Evaluating each example's log
density and prior sampler on `torch.device("meta")` therefore catches, without a GPU, a
tensor made without the model's device and any `.item()` / `bool(tensor)` host round trip
(which on a GPU would wait for the device inside the step loop).
"""
from __future__ import annotations

import json

import pytest
import torch
from test_examples import EXAMPLES, IMPROPER, MODELS, data_of

from compiler.api import compile_file

META = torch.device("meta")

# Random draws torch itself cannot make on the meta device: it has no meta kernel for
# them (Gamma, Beta and Dirichlet draws all go through these). The models' code is not at
# fault; every other operation of their samplers still runs on meta.
NO_META_KERNEL = ("aten::_sample_dirichlet", "aten::_standard_gamma")


def _short_text(path) -> dict:
    """The char-LM's data with its first 32 characters: its sampler draws one character
    per step, and meta tensors run through torch's Python decompositions (slow)."""
    data = json.loads(path.read_text())
    return {**data, "text": {**data["text"], "text": data["text"]["text"][:32]}}


def _bound(model: str, short: bool = False):
    program = compile_file(str(EXAMPLES / model))
    data = _short_text(data_of(model)) if short and model == "charlm.bgm" else \
        str(data_of(model))
    return program.bind(data, device=META)


def _theta(model) -> torch.Tensor:
    """Two points: distinct rows, except for models with nets, whose weights are point
    parameters that engines pass broadcast over particles (distinct weights are refused)."""
    if model.net_names:
        return torch.zeros(model.dim, device=META, dtype=model.dtype).expand(2, model.dim)
    return torch.zeros(2, model.dim, device=META, dtype=model.dtype)


@pytest.mark.parametrize("name", MODELS)
def test_the_log_density_runs_on_the_meta_device(name: str) -> None:
    model = _bound(name)
    if getattr(type(model), "implicit_names", ()):  # a GAN: no density, only draws
        pytest.skip("an implicit model has no log density (its sampler is tested below)")
    lp = model.log_prob(_theta(model))
    assert lp.device == META and tuple(lp.shape) == (2,) and lp.dtype == model.dtype


@pytest.mark.parametrize("name", sorted(set(MODELS) - IMPROPER))
def test_the_prior_sampler_runs_on_the_meta_device(name: str) -> None:
    model = _bound(name, short=True)
    try:
        if model.net_names:  # drawn at given weights, as `bgmc sample --fit` does
            given = model.packer.unpack(_theta(model)[0])
            draws = model.prior_draws_at(given, 3, seed=1)
        else:
            draws = model.sample_prior(model.data, (3,))
    except NotImplementedError as exc:
        if any(op in str(exc) for op in NO_META_KERNEL):
            pytest.skip(f"torch has no meta kernel for {str(exc).split(': ')[0]}")
        raise
    assert draws and all(v.device == META for v in draws.values()), \
        {k: v.device for k, v in draws.items()}
