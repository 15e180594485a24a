"""PSIS-LOO from the model, a block of observations at a time.

A fit of many rows leaves its pointwise log-likelihood out (runtime/evaluate.py: draws x
rows would not fit in memory). LOO is a sum over observations, and each observation's
Pareto-smoothed importance weights need only its own column of draws, so the model is run
at the fit's draws for one block of observations at a time and only the per-observation
results are kept: never draws x N. Where the observations are the rows of a plate that
holds no latent of its own (what `--batch` may subsample), a block is computed from those
rows of the data alone; otherwise every row is evaluated and the block's columns kept.

The numbers are ArviZ's `loo` (the same PSIS from `arviz.psislw`, the same relative
efficiency from the posterior's ESS), assembled as its ELPDData so `arviz.compare` ranks
them with fits that kept their log-likelihood."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runtime.accumulate import Accumulator, Mode
from runtime.diagnostics import certain, quiet
from runtime.errors import ModelError
from runtime.evaluate import chunk_draws
from runtime.output import arviz

# Draws x observations held at once: 2^24 float64 values are 128 MB.
BLOCK_VALUES = 2**24


def loo_from_model(model: Any, theta: torch.Tensor, reff: float) -> Any:
    """PSIS-LOO of `model` (bound to its data) at unconstrained draws theta
    [chains, draws, dim], with `reff` the posterior's relative efficiency (ArviZ's)."""
    chains, draws, _ = theta.shape
    sizes = _observation_sizes(model, theta[:, :1])
    if not sizes:
        raise ModelError("the model has no pointwise log-likelihood for LOO (its observations "
                         "are not independent given its continuous latents: a hidden "
                         "Markov model, a change point)")
    total = sum(sizes.values())
    plate = _row_plate(model, sizes)
    per_row = total // int(model.data[plate]) if plate is not None else 1
    rows = max(1, BLOCK_VALUES // (chains * draws * per_row))
    az = arviz()
    loo_i, lppd_i, khat = [], [], []
    count = int(model.data[plate]) if plate is not None else total
    for first in range(0, count, rows):
        last = min(count, first + rows)
        block = _rows(model, theta, plate, first, last) if plate is not None else \
            _columns(model, theta, first, last)
        samples = block.reshape(chains * draws, -1).T  # [observations, samples]
        samples = samples[~certain(samples)]  # padding past a ragged loop's end
        if not samples.size:
            continue
        with quiet():
            log_weights, k = az.psislw(-samples, reff)
        loo_i.append(_logsumexp(log_weights + samples))
        lppd_i.append(_logsumexp(samples) - np.log(chains * draws))
        khat.append(np.asarray(k))
    if not loo_i:
        raise ModelError("every observation has log-likelihood 0 at every draw (certain, or "
                         "padding past a ragged loop's end): LOO has nothing to compare")
    return _elpd(np.concatenate(loo_i), np.concatenate(lppd_i), np.concatenate(khat),
                 chains * draws)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.sum(np.exp(a - top), axis=-1)) + top[..., 0]


def _elpd(loo_i: np.ndarray, lppd_i: np.ndarray, khat: np.ndarray, samples: int) -> Any:
    """ArviZ's ELPDData of a `loo(..., pointwise=True)` on the log scale."""
    import xarray as xr  # noqa: PLC0415  (ArviZ's own dependency)
    from arviz.stats.stats import ELPDData  # noqa: PLC0415
    n = loo_i.size
    good_k = min(1 - 1 / np.log10(samples), 0.7)
    elpd = float(loo_i.sum())
    return ELPDData(
        data=[elpd, float((n * np.var(loo_i)) ** 0.5), float(lppd_i.sum()) - elpd, samples, n,
              bool(np.any(khat > good_k)), xr.DataArray(loo_i, dims=["obs"]).rename("loo_i"),
              xr.DataArray(khat, dims=["obs"]), "log", good_k],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i",
               "pareto_k", "scale", "good_k"])


def _accumulate(model: Any, data: Any, theta: torch.Tensor) -> Accumulator:
    acc = Accumulator(Mode(jacobian=False, priors=True), theta.dim() - 1, record=True,
                      locations=getattr(model, "locations", {}))
    with torch.no_grad():
        model.log_density(data, model.packer.unpack(theta), acc)
    return acc


def _pointwise(acc: Accumulator, names: list[str], batch: tuple[int, ...]) -> np.ndarray:
    """The pointwise log-likelihoods as one array [*batch, observations]."""
    parts = []
    for name in names:
        value = acc.pointwise[name]
        if tuple(value.shape[:2]) != batch:
            value = value.expand(batch + tuple(value.shape))
        parts.append(value.reshape(batch + (-1,)).detach().cpu().numpy())
    return np.concatenate(parts, axis=-1)


def _observation_sizes(model: Any, probe: torch.Tensor) -> dict[str, int]:
    acc = _accumulate(model, model.data, probe)
    return {name: int(value[0, 0].numel()) if value.dim() >= 2 else 1
            for name, value in acc.pointwise.items()}


def _row_plate(model: Any, sizes: dict[str, int]) -> str | None:
    """The size N whose rows are the observations, when a block of rows can be evaluated
    alone: every observed variable is a term of the plate over 1..N with N its first dim,
    no latent lives in that plate, and no data has N as another dim."""
    plates = dict(getattr(model, "plates", {}))
    specs = {spec.name: spec for spec in getattr(model, "data_specs", ())}
    firsts = {specs[name].dims[0] if name in specs and specs[name].dims else None
              for name in sizes}
    if len(firsts) != 1:
        return None
    plate = next(iter(firsts))
    if plate is None or plate not in plates or not isinstance(plate, str):
        return None
    terms = set(plates[plate])
    latents = set(getattr(model, "latent_names", ())) | set(getattr(model, "param_names", ()))
    if not set(sizes) <= terms or terms & latents:
        return None
    if any(plate in spec.dims[1:] for spec in specs.values()):
        return None
    rows = int(model.data[plate])
    if any(size % max(rows, 1) for size in sizes.values()):
        return None
    return plate


def _rows(model: Any, theta: torch.Tensor, plate: str, first: int, last: int) -> np.ndarray:
    """[chains, draws, observations of rows first..last-1], from those rows of the data."""
    index = torch.arange(first, last, device=model.device)
    updates = {spec.name: model.data[spec.name].index_select(0, index)
               for spec in model.data_specs
               if spec.dims and spec.dims[0] == plate and spec.name in model.data}
    updates[plate] = last - first
    data = model.data.replaced(updates)
    if hasattr(model, "transformed_data"):
        model.transformed_data(data)
    return _in_draw_chunks(model, data, theta, None)


def _columns(model: Any, theta: torch.Tensor, first: int, last: int) -> np.ndarray:
    """[chains, draws, observations first..last-1], from the whole data."""
    return _in_draw_chunks(model, model.data, theta, slice(first, last))


def _in_draw_chunks(model: Any, data: Any, theta: torch.Tensor, keep: slice | None
                    ) -> np.ndarray:
    chains, draws, _ = theta.shape
    values = sum(int(v.numel()) for k, v in data.items()
                 if k in getattr(model, "observed_names", ()) and isinstance(v, torch.Tensor))
    step = chunk_draws(chains, max(values, 1))
    names: list[str] | None = None
    out = []
    for start in range(0, draws, step):
        block = theta[:, start:start + step]
        acc = _accumulate(model, data, block)
        names = names or list(acc.pointwise)
        values_block = _pointwise(acc, names, tuple(block.shape[:2]))
        out.append(values_block if keep is None else values_block[..., keep].copy())
    return np.concatenate(out, axis=1)
