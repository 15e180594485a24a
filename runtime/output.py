"""Posterior draws as an ArviZ InferenceData (ArviZ 0.23, the last line for Python 3.11):
posterior (latents and deterministic nodes, named and shaped as in the model),
sample_stats, observed_data and log_likelihood; written to NetCDF atomically."""
from __future__ import annotations

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
                   attrs: dict[str, Any], chunk: int = 256, pointwise_ll: bool = True) -> Any:
    """theta: [chains, draws, dim] unconstrained draws. A net's weights are the same in
    every draw: they go once into the group `nets`, not into the posterior."""
    az = arviz()
    c, s, _ = theta.shape
    posterior: dict[str, list[np.ndarray]] = {}
    pointwise: dict[str, list[np.ndarray]] = {}
    discrete = _DiscretePosterior(int(attrs.get("seed", 0)))
    with torch.no_grad():
        for start in range(0, s, chunk):
            block = theta[:, start:start + chunk]
            for name, value in model.constrain(block).items():
                posterior.setdefault(name, []).append(_numpy(value))
            if getattr(model, "implicit_names", ()) or getattr(model, "diffusion_names", ()):
                # no density (a GAN) or only a random bound (a diffusion model)
                continue
            acc = model.accumulate(block, Mode(jacobian=False, priors=True), record=True)
            for name, value in (acc.pointwise if pointwise_ll else {}).items():
                if tuple(value.shape[:2]) != tuple(block.shape[:2]):
                    value = value.expand(tuple(block.shape[:2]) + tuple(value.shape))
                pointwise.setdefault(name, []).append(_numpy(value))
            discrete.add(acc)
    post = {k: np.concatenate(v, axis=1) for k, v in posterior.items()}
    nets = {k: post.pop(k)[0, 0] for k in getattr(model, "net_names", ()) if k in post}
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
    idata = az.from_dict(posterior=post, sample_stats=sample_stats or None,
                         log_likelihood=loglik or None, observed_data=observed or None,
                         dims={**dims, **d2, **d3}, coords={**coords, **c2, **c3},
                         attrs={k: str(v) for k, v in attrs.items()})
    if discrete.draws:
        idata.add_groups({"discrete_posterior": discrete.dataset()})
    if nets:
        idata.add_groups({"nets": az.dict_to_dataset(
            {k: v[None, None] for k, v in nets.items()},
            dims={k: [f"{k}_weight"] for k in nets}, coords={
                f"{k}_weight": np.arange(1, v.shape[0] + 1) for k, v in nets.items()})})
    return idata


class _DiscretePosterior:
    """The posterior of the summed-out discrete latents, exactly given each draw of the
    continuous ones: p(z | theta, data) is what the enumeration left before its
    logsumexp. Kept: one draw of z per posterior draw (so (theta, z) are joint posterior
    draws), the marginals p(z_i = k | data) averaged over draws (Rao-Blackwellised), and
    the most probable value of each element under them; for a chain, draws by forward
    filtering backward sampling and, as its mode, the Viterbi path."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.draws: dict[str, list[np.ndarray]] = {}
        self.prob_sum: dict[str, torch.Tensor] = {}
        self.count = 0
        self.values: dict[str, torch.Tensor] = {}
        self.best_score: dict[str, float] = {}
        self.best_path: dict[str, np.ndarray] = {}

    def add(self, acc: Any) -> None:
        for name, phi in acc.chains.items():
            self._add_chain(name, phi.detach().cpu(), acc.values[name].cpu())
        for name, log_cond in acc.conditionals.items():
            probs = log_cond.exp().movedim(0, -1).detach().cpu()  # [C, S, plate..., K]
            k = probs.shape[-1]
            flat = probs.reshape(-1, k)
            index = torch.multinomial(flat, 1, generator=self.generator).reshape(
                probs.shape[:-1])
            values = acc.values[name].cpu()
            self.values[name] = values
            self.draws.setdefault(name, []).append(values[index].numpy())
            total = probs.sum(dim=(0, 1))
            self.prob_sum[name] = self.prob_sum.get(name, 0) + total
        if acc.conditionals:
            first = next(iter(acc.conditionals.values()))
            self.count += int(first.shape[1] * first.shape[2])
        elif acc.chains:
            first = next(iter(acc.chains.values()))
            self.count += int(first.shape[0] * first.shape[1])

    def _add_chain(self, name: str, phi: torch.Tensor, values: torch.Tensor) -> None:
        """A chain: FFBS draws, forward-backward marginals, and the Viterbi path of the
        draw whose best path scores highest (the joint mode among the draws)."""
        from runtime import hmm  # noqa: PLC0415
        self.values[name] = values
        index = hmm.sample_paths(phi, self.generator)  # [C, S, T]
        self.draws.setdefault(name, []).append(values[index].numpy())
        self.prob_sum[name] = self.prob_sum.get(name, 0) + hmm.marginals(phi).sum(dim=(0, 1))
        path, score = hmm.viterbi(phi, with_score=True)
        best = int(score.argmax())
        if float(score.reshape(-1)[best]) > self.best_score.get(name, -float("inf")):
            self.best_score[name] = float(score.reshape(-1)[best])
            self.best_path[name] = values[path.reshape(-1, path.shape[-1])[best]].numpy()

    def dataset(self) -> Any:
        import xarray as xr  # noqa: PLC0415  (ArviZ's own dependency)
        az = arviz()
        draws = {k: np.concatenate(v, axis=1) for k, v in self.draws.items()}
        dims, coords = _one_based(draws, 2)
        ds = az.dict_to_dataset(draws, dims=dims, coords=coords)
        for name, total in self.prob_sum.items():
            marginal = (total / self.count).numpy()
            labels = self.values[name].numpy()
            value_dim = f"{name}_value"
            ds[f"{name}_marginal"] = xr.DataArray(marginal, dims=dims[name] + [value_dim],
                                                  coords={value_dim: labels})
            mode = self.best_path[name] if name in self.best_path else \
                labels[marginal.argmax(-1)]
            ds[f"{name}_mode"] = xr.DataArray(mode, dims=dims[name])
        return ds


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
    """Write the InferenceData as NetCDF through runtime.files.write_atomic (a temporary
    beside the target, renamed into place; the umask's mode). The file is made in memory
    first, so the HDF5 library never writes to disk itself: a full disk or the file-size
    limit is then an ordinary write error (OutputError naming the file), where HDF5
    writing a file of its own raised an error and then crashed the process."""
    from runtime.files import write_atomic  # noqa: PLC0415
    write_atomic(path, netcdf_bytes(idata))


def netcdf_bytes(idata: Any) -> memoryview:
    """The bytes of the NetCDF-4 file ArviZ's InferenceData.to_netcdf writes: the
    attributes at the root, one group per InferenceData group, numbers zlib-compressed."""
    import io  # noqa: PLC0415

    import xarray as xr  # noqa: PLC0415  (ArviZ's own dependency)
    buffer = io.BytesIO()
    mode = "w"
    if idata.attrs:
        xr.Dataset(attrs=idata.attrs).to_netcdf(buffer, mode=mode, engine="h5netcdf",
                                                group="/")
        mode = "a"
    for group in idata.groups():
        data = getattr(idata, group)
        encoding = {name: {"zlib": True} for name, values in data.variables.items()
                    if values.dtype.kind in "biufcS"}
        data.to_netcdf(buffer, mode=mode, engine="h5netcdf", group=group, encoding=encoding)
        mode = "a"
    if mode == "w":  # an empty InferenceData: an empty file
        import h5netcdf  # noqa: PLC0415
        h5netcdf.File(buffer, mode="w").close()
    return buffer.getbuffer()


def read_netcdf(path: str | Path) -> Any:
    """An InferenceData read whole from a NetCDF file (loaded eagerly, so a damaged file
    fails here, with its name, rather than later when a group is first used). Reading
    never runs code from the file: HDF5 holds arrays and attributes, not objects."""
    from runtime.errors import ModelError  # noqa: PLC0415
    p = Path(path)
    if not p.exists():
        raise ModelError(f"cannot read '{path}': no such file")
    if not p.is_file():
        raise ModelError(f"cannot read '{path}': it is a directory, not a fit" if p.is_dir()
                         else f"cannot read '{path}': not a regular file")
    az = arviz()
    try:
        with az.rc_context({"data.load": "eager"}):
            return az.from_netcdf(str(path))
    except MemoryError:
        raise ModelError(f"'{path}' is not a NetCDF file written by 'bgmc fit' (it claims "
                         "more memory than there is)") from None
    except Exception as exc:  # h5py/HDF5 and xarray errors vary: the file is not readable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"'{path}' is not a NetCDF file written by 'bgmc fit' ({first})") \
            from None
