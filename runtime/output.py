"""Posterior draws as an ArviZ InferenceData (ArviZ 0.23, the last line for Python 3.11):
posterior (latents and deterministic nodes, named and shaped as in the model),
sample_stats, observed_data and log_likelihood; written to NetCDF atomically."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.accumulate import Mode


def arviz() -> Any:
    """Import ArviZ lazily (it is slow to import) and without its refactor notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az  # noqa: PLC0415
    return az


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def inference_data(model: Any, theta: torch.Tensor, stats: dict[str, torch.Tensor],
                   attrs: dict[str, Any], chunk: int = 256) -> Any:
    """theta: [chains, draws, dim] unconstrained draws."""
    az = arviz()
    c, s, _ = theta.shape
    posterior: dict[str, list[np.ndarray]] = {}
    pointwise: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, s, chunk):
            block = theta[:, start:start + chunk]
            for name, value in model.constrain(block).items():
                posterior.setdefault(name, []).append(_numpy(value))
            acc = model.accumulate(block, Mode(jacobian=False, priors=True), record=True)
            for name, value in acc.pointwise.items():
                if tuple(value.shape[:2]) != tuple(block.shape[:2]):
                    value = value.expand(tuple(block.shape[:2]) + tuple(value.shape))
                pointwise.setdefault(name, []).append(_numpy(value))
    post = {k: np.concatenate(v, axis=1) for k, v in posterior.items()}
    loglik = {k: np.concatenate(v, axis=1) for k, v in pointwise.items()}
    observed = {k: _numpy(torch.as_tensor(model.data[k])) for k in model.observed_names
                if k in model.data}
    sample_stats = {k: _numpy(v) for k, v in stats.items()}
    dims, coords = _one_based(post, 2)
    d3, c3 = _one_based(observed, 0, suffix="obs")
    same = {k: v for k, v in loglik.items() if k in observed and v.shape[2:] ==
            observed[k].shape}
    d2, c2 = _one_based(same, 2, suffix="obs")
    d4, c4 = _one_based({k: v for k, v in loglik.items() if k not in same}, 2, suffix="ll")
    d2, c2 = {**d2, **d4}, {**c2, **c4}
    return az.from_dict(posterior=post, sample_stats=sample_stats or None,
                        log_likelihood=loglik or None, observed_data=observed or None,
                        dims={**dims, **d2, **d3}, coords={**coords, **c2, **c3},
                        attrs={k: str(v) for k, v in attrs.items()})


def _one_based(values: dict[str, np.ndarray], skip: int, suffix: str = "dim"
               ) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Dimension names and 1-based coordinates, so `theta[1]` means what the model says."""
    dims: dict[str, list[str]] = {}
    coords: dict[str, np.ndarray] = {}
    for name, value in values.items():
        names = [f"{name}_{suffix}_{i}" for i in range(value.ndim - skip)]
        dims[name] = names
        for dim_name, size in zip(names, value.shape[skip:], strict=True):
            coords[dim_name] = np.arange(1, size + 1)
    return dims, coords


def write_netcdf(idata: Any, path: str | Path) -> None:
    """Write to a temporary file beside the target, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_netcdf(path: str | Path) -> Any:
    from runtime.errors import ModelError  # noqa: PLC0415
    if not Path(path).exists():
        raise ModelError(f"cannot read '{path}': no such file")
    try:
        return arviz().from_netcdf(str(path))
    except Exception as exc:  # h5/netCDF errors vary by backend
        raise ModelError(f"'{path}' is not a NetCDF file written by 'bgmc fit' ({exc})") \
            from None
