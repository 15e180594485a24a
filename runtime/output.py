"""Writing a fit: an ArviZ InferenceData (ArviZ 0.23, the last line for Python 3.11) built
from arrays, written to and read from NetCDF. This module's one job is that format: it
never runs the model (runtime/evaluate.py evaluates it at the draws and hands over NumPy
arrays) and does not import torch.

The groups: posterior (latents and deterministic nodes, named and shaped as in the model,
with 1-based coordinates), sample_stats, log_likelihood, observed_data, and when there are
some, discrete_posterior (the summed-out discrete latents) and nets (a net's weights, once).
Files are written atomically."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from runtime.evaluate import DiscretePosterior, Evaluation


def arviz() -> Any:
    """Import ArviZ lazily (it is slow to import) and without its refactor notice. Its
    logged warnings about its own checks (a single chain's 'Shape validation failed') are
    silenced: bgm says what the user must know about a fit in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az  # noqa: PLC0415
    # ArviZ logs through its own Logger instance (arviz._log, not registered with
    # logging.getLogger), so it is quieted there, and by name for its submodules
    for log in (getattr(az, "_log", None), logging.getLogger("arviz")):
        if isinstance(log, logging.Logger):
            log.setLevel(logging.ERROR)
    return az


def build_inference_data(evaluation: Evaluation, sample_stats: Mapping[str, np.ndarray],
                         attrs: Mapping[str, Any]) -> Any:
    """The InferenceData of a model evaluated at its draws; `sample_stats` are the sampler's
    statistics [chains, draws], `attrs` the fit's attributes (stored as strings)."""
    az = arviz()
    post, loglik, observed = evaluation.posterior, evaluation.log_likelihood, evaluation.observed
    nets = evaluation.nets
    stats = dict(sample_stats)
    dims, coords = _one_based(post, 2)
    d3, c3 = _one_based(observed, 0, suffix="obs")
    same = {k: v for k, v in loglik.items() if k in observed and v.shape[2:] ==
            observed[k].shape}
    d2, c2 = _one_based(same, 2, suffix="obs")
    d4, c4 = _one_based({k: v for k, v in loglik.items() if k not in same}, 2, suffix="ll")
    d2, c2 = {**d2, **d4}, {**c2, **c4}
    idata = az.from_dict(posterior=post, sample_stats=stats or None,
                         log_likelihood=loglik or None, observed_data=observed or None,
                         dims={**dims, **d2, **d3}, coords={**coords, **c2, **c3},
                         attrs={k: str(v) for k, v in attrs.items()})
    if evaluation.discrete is not None:
        idata.add_groups({"discrete_posterior": _discrete_dataset(evaluation.discrete)})
    if nets:
        idata.add_groups({"nets": az.dict_to_dataset(
            {k: v[None, None] for k, v in nets.items()},
            dims={k: [f"{k}_weight"] for k in nets}, coords={
                f"{k}_weight": np.arange(1, v.shape[0] + 1) for k, v in nets.items()})})
    return idata


def add_warmup(idata: Any, evaluation: Evaluation,
               sample_stats: Mapping[str, np.ndarray]) -> None:
    """The warmup iterations (`--save-warmup`) as ArviZ's groups warmup_posterior and
    warmup_sample_stats, named and indexed as the posterior."""
    az = arviz()
    post = evaluation.posterior
    dims, coords = _one_based(post, 2)
    idata.add_groups({
        "warmup_posterior": az.dict_to_dataset(post, dims=dims, coords=coords),
        "warmup_sample_stats": az.dict_to_dataset(dict(sample_stats))})


def _discrete_dataset(discrete: DiscretePosterior) -> Any:
    """The group discrete_posterior: per latent z its draws `z`, `z_marginal` (over a
    `z_value` dim labelled with the states' values) and `z_mode`."""
    import xarray as xr  # noqa: PLC0415  (ArviZ's own dependency)
    az = arviz()
    dims, coords = _one_based(discrete.modes, 0)  # draws may be left out for their size
    ds = az.dict_to_dataset(discrete.draws, dims={k: dims[k] for k in discrete.draws},
                            coords=coords) if discrete.draws else xr.Dataset(coords=coords)
    for name, marginal in discrete.marginals.items():
        value_dim = f"{name}_value"
        ds[f"{name}_marginal"] = xr.DataArray(marginal, dims=dims[name] + [value_dim],
                                              coords={value_dim: discrete.values[name]})
        ds[f"{name}_mode"] = xr.DataArray(discrete.modes[name], dims=dims[name])
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
        suffix = p.suffix.lower()
        if suffix in (".json", ".csv"):  # what bgmc fit also writes, but not for this
            kind = "point estimates" if suffix == ".json" else "a table of draws"
            raise ModelError(f"'{path}' is {kind}; this command reads the .nc file that "
                             "'bgmc fit --method nuts|advi|svi|exact -o FIT.nc' writes") \
                from None
        raise ModelError(f"'{path}' is not a NetCDF file written by 'bgmc fit' ({first})") \
            from None


def draws_csv(idata: Any) -> str:
    """The posterior draws as a CSV table, as CmdStan users read them: one row per draw,
    columns `chain` and `draw` (from 1), `lp__` when the fit has it, then one column per
    element of each variable (`theta[1]`, `Sigma[1,2]`, 1-based, last index fastest)."""
    import io  # noqa: PLC0415
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    columns: dict[str, np.ndarray] = {
        "chain": np.repeat(np.arange(1, chains + 1), draws),
        "draw": np.tile(np.arange(1, draws + 1), chains)}
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "lp" in stats:
        columns["lp__"] = np.asarray(stats["lp"]).reshape(-1)
    for name, var in post.data_vars.items():
        values = np.asarray(var).reshape(chains * draws, -1)
        shape = var.shape[2:]
        for k, index in enumerate(np.ndindex(*shape) if shape else [()]):
            label = f"{name}[{','.join(str(i + 1) for i in index)}]" if shape else str(name)
            columns[label] = values[:, k]
    out = io.StringIO()
    out.write(",".join(columns) + "\n")
    table = np.column_stack([np.asarray(v, dtype=float) for v in columns.values()])
    integer = [k in ("chain", "draw") for k in columns]
    for row in table:
        out.write(",".join(str(int(x)) if whole else repr(float(x))
                           for x, whole in zip(row, integer, strict=True)) + "\n")
    return out.getvalue()
