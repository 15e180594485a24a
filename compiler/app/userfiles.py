"""Files a user hands back to bgm: fits (.json point estimates, .nc draws) and initial
values. They are untrusted: every value is checked against the model bound to the data
(numbers of the model's shapes, finite, in their supports) before any is used, and every
failure is one ModelError naming the file and the flag."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.errors import ModelError


def read_json(path: str, flag: str | None = None) -> Any:
    """A JSON file given by the user; any failure is a ModelError naming it (and the flag)."""
    shown = f"{flag} '{path}'" if flag else f"'{path}'"
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read {shown}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{shown} is not a JSON file: it is not UTF-8 text (byte {exc.start} "
                         f"is 0x{exc.object[exc.start]:02x})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{shown} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    except RecursionError:
        raise ModelError(f"{shown} is not valid JSON here: it is nested too deeply") from None
    except ValueError as exc:  # a number of more than 4300 digits
        raise ModelError(f"{shown} is not valid JSON here: {exc}") from None


def read_fit(path: str, need: str | None = None) -> Any:
    """A .nc fit, its draws checked to be what 'bgmc fit' writes: numbers with the dims
    (chain, draw) first, of one size, in each group of draws."""
    from runtime.output import read_netcdf  # noqa: PLC0415 - ArviZ is slow to import
    idata = read_netcdf(path)
    groups = idata.groups()
    if need is not None and need not in groups:
        what = "only the nets' weights" if "nets" in groups else "no posterior draws"
        raise ModelError(f"'{path}' has {what}: not a posterior from 'bgmc fit' (a NetCDF "
                         "file of --method nuts, advi, svi or exact)")
    for group in ("posterior", "sample_stats", "log_likelihood"):
        if group not in groups:
            continue
        sizes = set()
        for name, var in getattr(idata, group).data_vars.items():
            if tuple(var.dims[:2]) != ("chain", "draw") or var.dtype.kind not in "biuf" or \
                    0 in var.shape[:2]:
                raise ModelError(f"'{path}': '{name}' in its {group} is not draws of numbers "
                                 "(dims chain and draw first): not a fit from 'bgmc fit'")
            sizes.add(tuple(var.shape[:2]))
        if len(sizes) > 1:
            raise ModelError(f"'{path}': the variables of its {group} have different numbers "
                             "of draws: not a fit from 'bgmc fit'")
    return idata


def fitted_values(bound: Any, fit: str, latents: list[str], draws: int,
                  seed: int) -> dict[str, Any]:
    """The fit's values of `latents` (the continuous latents, params and nets of the model
    `bound` to the data), each with a leading draw dim: `draws` posterior draws of a .nc
    fit, or the point estimates of a .json one repeated `draws` times."""
    import numpy as np  # noqa: PLC0415

    from runtime.posterior import check_values  # noqa: PLC0415
    if fit.endswith(".nc"):
        from runtime.diagnostics import posterior_latents  # noqa: PLC0415
        idata = read_fit(fit)
        _check_draws(idata, latents, fit)
        values = posterior_latents(idata, latents, draws, seed)
        return check_values(bound, values, f"--fit '{fit}'", batch_ndim=1)
    report = read_json(fit, "--fit")
    estimates = report.get("estimates") if isinstance(report, dict) else None
    if not isinstance(estimates, dict):
        raise ModelError(f"--fit '{fit}' is not a point-estimate file from 'bgmc fit' (a JSON "
                         'object with "estimates"; posterior draws are a .nc file)')
    values = check_values(bound, estimates, f"--fit '{fit}'")
    return {k: np.repeat(v[None], draws, axis=0) for k, v in values.items()}


def _check_draws(idata: Any, names: list[str], fit: str) -> None:
    """A .nc fit's posterior draws of `names` all have the dims (chain, draw) first, of one
    size: what posterior_latents pools."""
    if "posterior" not in idata.groups():
        return
    post = idata.posterior
    sizes = set()
    for name in names:
        if name in post:
            shape = post[name].shape
            if len(shape) < 2 or 0 in shape[:2]:
                raise ModelError(f"--fit '{fit}': the posterior draws of '{name}' do not have "
                                 "a chain and a draw dimension: not a fit from 'bgmc fit'")
            sizes.add(tuple(shape[:2]))
    if len(sizes) > 1:
        raise ModelError(f"--fit '{fit}': its variables have different numbers of draws: not "
                         "a fit from 'bgmc fit'")


def initial_values(init: str | dict[str, Any], model: Any) -> Any:
    """--init FILE (or a dict from Python): initial values checked against the model, in
    the model's unconstrained coordinates."""
    from runtime.posterior import check_values  # noqa: PLC0415
    if isinstance(init, str):
        values, source, what = read_json(init, "--init"), f"--init '{init}'", "the file"
        if not isinstance(values, dict):
            raise ModelError(f"--init '{init}' is not a JSON object of initial values "
                             '({"name": value, ...})')
    else:
        values, source, what = init, "init", "the values"
    checked = check_values(model, values, source, what=what)
    return model.unconstrain(checked)
