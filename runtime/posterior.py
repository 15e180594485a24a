"""Full Bayesian inference for a bound model: NUTS or ADVI to an InferenceData."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from runtime import advi, chees, nuts
from runtime.accumulate import Mode
from runtime.distributed import World
from runtime.errors import ModelError
from runtime.evaluate import evaluate, inference_data, log_prob_in_chunks
from runtime.optimize import find_start
from runtime.output import add_warmup
from runtime.streams import chain_seed

# Random starting points drawn per chain, of which the one with the highest log density is
# kept. Stan keeps the first finite one; but a start in a region where the density is finite
# yet astronomically steep (an ARMA chain with |theta| > 1 grows like theta^T) drives step-size
# adaptation to ~1e-50 and the chain never leaves, costing every batched transition the
# maximal tree depth. The best of a few draws from the same box avoids that while keeping
# the chains' starts dispersed, which R-hat needs.
CANDIDATES_PER_CHAIN = 4


_LABEL = {"nuts": "NUTS", "chees": "Many-chain HMC (--method chees)"}


def _refuse_params(model: Any, method: str) -> None:
    if method in ("nuts", "chees") and model.net_names:
        names = ", ".join(model.net_names)
        raise ModelError(f"{_LABEL[method]} integrates every unknown, but the weights of "
                         f"the net "
                         f"{names} are point parameters (rule 23): fit the model with "
                         "--method map or mle")
    if method in ("nuts", "chees") and model.param_names:
        names = ", ".join(model.param_names)
        verb = "is a point parameter" if len(model.param_names) == 1 else \
            "are point parameters"
        raise ModelError(f"{_LABEL[method]} needs a prior on every unknown; {names} {verb}: "
                         "give it a "
                         "prior (e.g. '~ Flat()') or fit point estimates with --method map "
                         "or mle")


def starts(model: Any, chains: int, seed: int, radius: float,
           init: torch.Tensor | None, candidates: int = CANDIDATES_PER_CHAIN) -> torch.Tensor:
    """One finite starting point per chain: the best of `candidates` random draws
    (the given `init` for every chain when there is one). Chain i draws its candidates
    from its own stream (runtime/streams.py), so its start does not depend on the
    number of chains."""
    mode = Mode.for_method("nuts")
    if init is not None:
        generator = torch.Generator().manual_seed(seed + 7919)
        return torch.stack([find_start(model, mode, generator, radius, init)] * chains)
    generators = [torch.Generator().manual_seed(chain_seed(seed + 7919, c))
                  for c in range(chains)]
    drawn = torch.stack([find_start(model, mode, g, radius, None)
                         for g in generators for _ in range(candidates)])
    lp = log_prob_in_chunks(model, drawn[None], mode).reshape(chains, candidates)
    best = lp.argmax(dim=1)
    return drawn.reshape(chains, candidates, -1)[torch.arange(chains), best]


def _refuse_no_latents(model: Any, method: str) -> None:
    if model.dim == 0:
        raise ModelError(f"--method {method}: the model has no latent variables to sample; "
                         "its data alone are drawn by 'bgmc sample'")


def run_nuts(model: Any, settings: nuts.NutsSettings, radius: float = 2.0,
             init: torch.Tensor | None = None, progress: Any = None,
             log_likelihood: str = "auto") -> Any:
    _refuse_params(model, "nuts")
    _refuse_no_latents(model, "nuts")
    q0 = starts(model, settings.chains, settings.seed, radius, init)
    world = World.current()  # the chains split across its ranks, gathered on rank 0
    mine = world.chains(settings.chains)
    began = time.perf_counter()
    result = world.joined(nuts.sample(
        model.log_prob, q0[mine.start:mine.stop],
        dataclasses.replace(settings, chains=len(mine), first_chain=mine.start), progress))
    seconds = time.perf_counter() - began
    if result is None:  # not rank 0: rank 0 builds the fit
        return None
    stats = _nuts_stats(result.log_density, result.stats, settings.max_treedepth)
    attrs = {"model": model.name, "method": "nuts", "seed": settings.seed,
             "chains": settings.chains, "warmup": settings.warmup,
             "adapt_delta": settings.adapt_delta, "max_treedepth": settings.max_treedepth,
             "metric": settings.metric, "thin": settings.thin,
             "save_warmup": settings.save_warmup, "sampling_seconds": round(seconds, 3)}
    centred = getattr(model, "centred", ())
    if centred:  # for the divergence hint: which latents non-centring would help
        attrs["centred"] = ", ".join(f"{a} (scale {b})" for a, b in centred)
    idata = inference_data(model, result.draws, stats, attrs, log_likelihood)
    if result.warmup_draws is not None and result.warmup_stats is not None:
        assert result.warmup_log_density is not None
        warm = evaluate(model, result.warmup_draws, settings.seed, "never")
        add_warmup(idata, warm, {k: v.cpu().numpy() for k, v in _nuts_stats(
            result.warmup_log_density, result.warmup_stats, settings.max_treedepth).items()})
    return idata


def run_chees(model: Any, settings: chees.CheesSettings, radius: float = 2.0,
              init: torch.Tensor | None = None, progress: Any = None,
              log_likelihood: str = "auto") -> Any:
    """Many-chain HMC (runtime/chees.py) to the same InferenceData as NUTS. The chains
    start in `superchains` groups, each group from one point, and the fit records the
    grouping (attr `superchains`) for nested R-hat."""
    _refuse_params(model, "chees")
    _refuse_no_latents(model, "chees")
    groups = superchains(settings.chains)
    distinct = starts(model, groups, settings.seed, radius, init)
    q0 = distinct[superchain_of(settings.chains, groups)]
    began = time.perf_counter()  # on several ranks: their chains, gathered on rank 0
    result = World.current().joined(chees.sample(model.log_prob, q0, settings, progress),
                                    shared=("step_size", "trajectory_length", "metric"))
    seconds = time.perf_counter() - began
    if result is None:  # not rank 0: rank 0 builds the fit
        return None
    attrs = {"model": model.name, "method": "chees", "seed": settings.seed,
             "chains": settings.chains, "superchains": groups, "warmup": settings.warmup,
             "adapt_delta": settings.adapt_delta, "metric": settings.metric,
             "thin": settings.thin, "save_warmup": settings.save_warmup,
             "step_size": float(result.step_size[0]),
             "trajectory_length": float(result.trajectory_length[0]),
             "sampling_seconds": round(seconds, 3)}
    centred = getattr(model, "centred", ())
    if centred:
        attrs["centred"] = ", ".join(f"{a} (scale {b})" for a, b in centred)
    idata = inference_data(model, result.draws, result.stats, attrs, log_likelihood)
    if result.warmup_draws is not None and result.warmup_stats is not None:
        warm = evaluate(model, result.warmup_draws, settings.seed, "never")
        add_warmup(idata, warm, {k: v.cpu().numpy() for k, v in result.warmup_stats.items()})
    return idata


def superchains(chains: int) -> int:
    """Groups of chains that share a starting point: 4 when there are at least 8 chains
    (nested R-hat compares the groups), else one chain per group (classic R-hat)."""
    return 4 if chains >= 8 else chains


def superchain_of(chains: int, groups: int) -> torch.Tensor:
    """The 0-based group of each chain: contiguous blocks of nearly equal size."""
    return torch.arange(chains) * groups // chains


def _nuts_stats(lp: torch.Tensor, st: dict[str, torch.Tensor],
                max_treedepth: int) -> dict[str, torch.Tensor]:
    """The sampler's statistics under ArviZ's names."""
    return {
        "lp": lp,
        "acceptance_rate": st["accept_stat"],
        "step_size": st["step_size"],
        "tree_depth": st["tree_depth"],
        "n_steps": st["n_leapfrog"],
        "diverging": st["diverging"],
        "energy": st["energy"],
        "reached_max_treedepth": st["tree_depth"] >= max_treedepth,
    }


def run_advi(model: Any, settings: advi.AdviSettings, radius: float = 2.0,
             init: torch.Tensor | None = None, log_likelihood: str = "auto") -> Any:
    _refuse_no_latents(model, "advi")
    q0 = starts(model, 1, settings.seed, radius, init)[0]
    result = advi.fit(model.log_prob, q0, settings, advi.point_mask(model))
    attrs = {"model": model.name, "method": f"advi-{settings.family}", "seed": settings.seed,
             "iterations": result.iterations, "converged": result.converged,
             "elbo": result.elbo[-1] if result.elbo else float("nan")}
    lp = log_prob_in_chunks(model, result.draws)
    if result.log_q is not None:
        attrs["pareto_k"] = pareto_k(lp - result.log_q)
    return inference_data(model, result.draws, {"lp": lp}, attrs, log_likelihood)


def pareto_k(log_ratios: torch.Tensor) -> float:
    """Pareto k of importance ratios p / q at draws from a variational q (PSIS, as Stan
    and ArviZ report for VI): above 0.7 the approximation is too far from the posterior
    for its draws to be trusted (mean-field ADVI's too-narrow hierarchical scales)."""
    import numpy as np  # noqa: PLC0415

    from runtime.diagnostics import quiet  # noqa: PLC0415
    from runtime.output import arviz  # noqa: PLC0415
    ratios = log_ratios.reshape(-1).detach().cpu().numpy()
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size < 10:
        return float("nan")
    with quiet():
        _, k = arviz().psislw(ratios - ratios.max())
    return float(k)


def svi_result(svi: Any, log_likelihood: str = "auto") -> tuple[Any, float]:
    """The fitted variational posterior as an InferenceData (draws of every latent from q
    over the full data, the point values of params and nets) and the full-data ELBO; at
    the weights' moving average when SVI keeps one (a diffusion model's), so that what
    the fit saves is what `bgmc sample --fit` should draw with."""
    with svi.averaged():
        return _svi_result(svi, log_likelihood)


def _svi_result(svi: Any, log_likelihood: str) -> tuple[Any, float]:
    s = svi.settings
    point = all(lat.name in svi.model.param_names for lat in svi.model.latents)
    draws, log_q = svi.draws_with_log_q(1 if point else s.draws)  # no latents: one point
    lp = log_prob_in_chunks(svi.model, draws)
    attrs = {"model": svi.model.name, "method": "svi", "seed": s.seed,
             "steps": svi.state.step, "batch": s.batch or 0, "plate": svi.plate or "",
             "lr": s.lr, "guide": "guide block" if svi.guide is not None else "meanfield",
             "elbo": svi.full_elbo(), "schedule": s.schedule, "ema": svi.ema_decay()}
    if log_q is not None and not point:
        attrs["pareto_k"] = pareto_k(lp - log_q)
    # pointwise log-likelihoods (for LOO) of a net's data would be the largest part of
    # the file by far (a VAE: draws x images x pixels) and LOO is not how nets are compared
    pointwise = "never" if svi.model.net_names else log_likelihood
    return inference_data(svi.model, draws, {"lp": lp}, attrs, pointwise), attrs["elbo"]


def numeric_array(value: Any, what: str) -> Any:
    """`value` (from a fit file: JSON lists, or a NetCDF variable) as a float array, or a
    ModelError naming `what`: numbers only (not strings, booleans, nulls or objects), in a
    rectangular nesting of lists."""
    import numpy as np  # noqa: PLC0415
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise ModelError(f"{what} is not numeric (its values are of type {value.dtype})")
        return value.astype(float)
    stack = [value]
    while stack:  # iterative: a deeply nested file cannot exhaust the recursion limit
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            kind = {str: "a string", dict: "an object", type(None): "null",
                    bool: "a boolean"}.get(type(item), type(item).__name__)
            raise ModelError(f"{what} holds {kind}, not only numbers")
    try:
        return np.asarray(value, dtype=float)
    except (ValueError, OverflowError):
        raise ModelError(f"{what} is not a rectangular array of numbers (its lists differ "
                         "in length, or a number is too large)") from None


def check_values(model: Any, values: dict[str, Any], source: str, batch_ndim: int = 0,
                 what: str = "the fit") -> dict[str, Any]:
    """Values of `model`'s latents and params read from a file, checked before
    use: numbers of the model's shapes (after `batch_ndim` leading draw dims), finite, and
    inside each variable's support. Returns them as float arrays, without the names that
    are not latents or params of the model (a point fit also lists deterministic nodes;
    the samplers read only these). A file that does not pass is refused with a message
    naming it and the variable, as a user error; `source` names the file in messages
    (e.g. "--fit 'fit.json'")."""
    import numpy as np  # noqa: PLC0415
    latents = {lat.name: lat for lat in model.latents}
    out: dict[str, Any] = {}
    for name, value in values.items():
        lat = latents.get(name)
        if lat is None:
            continue
        arr = numeric_array(value, f"{source}: the value of '{name}'")
        shape, expected = tuple(arr.shape[batch_ndim:]), tuple(lat.shape)
        if arr.ndim < batch_ndim or shape != expected:
            raise ModelError(f"{source}: '{name}' has shape {list(shape)}, but the model's "
                             f"'{name}'{_at(model, name)} has shape {list(expected)}: was "
                             f"{what} made with another model or data?")
        if not np.isfinite(arr).all():
            raise ModelError(f"{source}: '{name}' holds non-finite values (NaN or infinite)")
        out[name] = arr
    # the support's transforms are found by running the log density, which reads the
    # observed data: without it (predicting new data) the supports are not checked here
    observed = all(name in model.data for name in model.observed_names)
    if model.latents and observed and all(lat.name in out for lat in model.latents):
        _check_support(model, out, source, batch_ndim)
    return out


def _check_support(model: Any, values: dict[str, Any], source: str, batch_ndim: int,
                   chunk: int = 64) -> None:
    """A value outside its variable's support does not come back from the round trip
    through the unconstrained coordinates (unconstrain clamps it to the support, or
    gives NaN): theta = 1.5 of a Beta comes back as 1, a simplex summing to 1.1 comes back
    normalised. Values on a bound (a fit's theta = 1.0) come back as they were."""
    if getattr(model, "implicit_names", ()):  # constrain does not run its transforms
        return
    tol = 1e-6 if model.dtype == torch.float64 else 1e-3
    draws = next(iter(values.values())).shape[0] if batch_ndim else 1
    for start in range(0, draws, chunk):
        part = {k: torch.as_tensor(v[start:start + chunk] if batch_ndim else v,
                                   dtype=model.dtype, device=model.device)
                for k, v in values.items()}
        with torch.no_grad():
            back = model.constrain(model.unconstrain(part, batch_ndim))
        for lat in model.latents:
            x, y = part[lat.name], back[lat.name].reshape(part[lat.name].shape)
            bad = ~((y - x).abs() <= tol * (1 + x.abs()))
            if bool(bad.any()):
                value = float(x.reshape(-1)[bad.reshape(-1)][0])
                raise ModelError(f"{source}: a value of '{lat.name}' ({value:.6g}) is outside "
                                 f"its support{_at(model, lat.name)}")


def _at(model: Any, name: str) -> str:
    where = model.locations.get(name)
    return f" ({where})" if where else ""
