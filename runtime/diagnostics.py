"""Summaries Bayesian users check before trusting a fit, computed by ArviZ: mean, sd,
HDI, bulk/tail ESS, R-hat, with warnings for R-hat > 1.01, low ESS, divergences and
saturated tree depth; PSIS-LOO / WAIC model comparison."""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from runtime.errors import ModelError
from runtime.output import arviz

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


# Above this Pareto k, importance ratios p / q have too heavy a tail (Stan, ArviZ); with
# S draws the limit is min(1 - 1/log10(S), 0.7), as ArviZ's good_k (Vehtari et al. 2024).
PARETO_K_LIMIT = 0.7


def summarize(idata: Any, var_names: list[str] | None = None,
              hdi_prob: float = 0.94) -> tuple[str, list[str]]:
    """ArviZ's summary of the posterior (in the model's order; `var_names` to choose
    variables, `hdi_prob` for the interval) as text, and the warnings a user must read.
    Variables constant in every draw (a deterministic node of data alone) are not rows
    (their sd is 0 and R-hat undefined): one line lists them with their values."""
    az = arviz()
    post = idata.posterior
    if var_names:
        unknown = [v for v in var_names if v not in post.data_vars]
        discrete = getattr(idata, "discrete_posterior", None) \
            if "discrete_posterior" in idata.groups() else None
        if unknown and discrete is not None and f"{unknown[0]}_marginal" in discrete:
            raise ModelError(f"--var-names: '{unknown[0]}' is a summed-out discrete latent; "
                             "its posterior is in the fit's group discrete_posterior "
                             f"({unknown[0]}_marginal: the probability of each value, "
                             f"{unknown[0]}_mode, and its draws)")
        if unknown:
            raise ModelError(f"--var-names: '{unknown[0]}' is not a variable of the fit; it "
                             f"has {', '.join(map(str, post.data_vars))}")
    names = list(var_names) if var_names else [str(v) for v in post.data_vars]
    constant = [v for v in names if _constant(post[v].values)]
    shown = [v for v in names if v not in constant]
    with quiet():
        table = az.summary(idata, var_names=shown, kind="all", hdi_prob=hdi_prob,
                           round_to="none") if shown else None
    if table is not None and post.sizes.get("chain", 1) == 1:
        table = table.drop(columns=["r_hat"], errors="ignore")  # undefined for one chain
    groups = _int(getattr(idata, "attrs", {}).get("superchains"))
    if table is not None:
        _finite_moments(table, post, shown)
        if groups is not None and 1 < groups < post.sizes.get("chain", 1):
            table = _nested_r_hat_column(table, post, shown, groups)
    text = _format(table) if table is not None else ""
    if constant:
        values = ", ".join(f"{v} = {_value_text(post[v].values)}" for v in constant)
        text += ("\n" if text else "") + f"constant in every draw: {values}"
    table = table if table is not None else _empty_table()
    warnings: list[str] = []
    chains = idata.posterior.sizes.get("chain", 1)
    # the fit's attributes are the InferenceData's own (runtime/output.py), not the group's
    method = str(getattr(idata, "attrs", {}).get("method", ""))
    for column, label, who in (("r_hat", "R-hat", "the chains disagree"),
                               (NESTED, "nested R-hat", "the groups of chains started "
                                "together disagree: run a longer --warmup")):
        if chains > 1 and column in table:
            bad = table[table[column] > RHAT_LIMIT]
            if len(bad):
                warnings.append(f"{label} > {RHAT_LIMIT} for {', '.join(bad.index[:5])}"
                                f"{' ...' if len(bad) > 5 else ''}: {who}")
    if method in ("nuts", "chees") and "ess_bulk" in table:
        # 100 per chain for a few long chains (Vehtari et al. 2021); many short chains
        # need the same total, not 100 each
        least = ESS_PER_CHAIN * min(chains, 4)
        low = table[(table["ess_bulk"] < least) | (table["ess_tail"] < least)]
        if len(low):
            warnings.append(f"low effective sample size (< {least}) for "
                            f"{', '.join(low.index[:5])}{' ...' if len(low) > 5 else ''}")
    k = _float(getattr(idata, "attrs", {}).get("pareto_k"))
    samples = int(post.sizes.get("chain", 1) * post.sizes.get("draw", 1))
    k_limit = min(1 - 1 / math.log10(samples), PARETO_K_LIMIT) if samples > 10 else \
        PARETO_K_LIMIT
    if k is not None and k > k_limit:
        warnings.append(f"Pareto k = {k:.3f} (> {k_limit:.3f}) for the importance ratios "
                        "p / q at the variational draws: the approximation is too far from the "
                        "posterior to trust its draws (mean-field ADVI makes hierarchical "
                        "scales too narrow); fit with --method nuts, or --family fullrank")
    ridge = _ridge(post, shown)
    if ridge:
        warnings.append(f"{ridge}: the data identify little more than a combination of them "
                        "(a ridge, such as two intercepts whose sum alone is identified); "
                        "reparameterise, or give them proper, tighter priors")
    heavy = _heavy_tails(post, shown)
    if heavy:
        warnings.append(f"heavy tails: {heavy}; means, sds, ESS and R-hat of such draws "
                        "cannot be trusted (a posterior without a finite mean, or an "
                        "improper direction): give it a proper, tighter prior")
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        n = int(np.asarray(stats["diverging"]).sum())
        total = int(np.asarray(stats["diverging"]).size)
        if n:
            centred = str(getattr(idata, "attrs", {}).get("centred", ""))
            fix = (f"reparameterise non-centred: {centred} drawn as loc + scale * z with "
                   "z ~ Normal(0, 1)" if centred else "raise --adapt-delta (towards 0.99)")
            warnings.append(f"{n} of {total} transitions ({100 * n / total:.1f}%) were "
                            f"divergent: {fix}")
    if stats is not None and "reached_max_treedepth" in stats:
        n = int(np.asarray(stats["reached_max_treedepth"]).sum())
        if n:
            fix = ("the ridge above makes trajectories long; a deeper tree will not identify "
                   "it" if ridge else "raise --max-treedepth or try --metric dense")
            warnings.append(f"{n} transitions hit the maximum tree depth: {fix}")
    return text, warnings


NESTED = "r_hat_nested"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def nested_r_hat(draws: np.ndarray, groups: np.ndarray) -> float:
    """Nested R-hat (Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari and Gelman 2022)
    of draws [chains, draws] whose chains are grouped into superchains (`groups`, the
    0-based superchain of each chain; the chains of a superchain start from one point).
    Between-superchain variance of the superchain means over the within-superchain
    variance (of the chain means, plus within chains): many short chains are checked by
    whether groups started apart agree, which classic R-hat cannot do when each chain
    has only a few draws. ArviZ has no nested R-hat, hence this function."""
    draws = np.asarray(draws, dtype=float)
    labels = np.unique(groups)
    if len(labels) < 2 or not np.all(np.isfinite(draws)):
        return float("nan")
    chain_means = draws.mean(1)
    chain_vars = draws.var(1, ddof=1) if draws.shape[1] > 1 else np.zeros(len(draws))
    super_means, within = [], []
    for k in labels:
        members = groups == k
        means = chain_means[members]
        super_means.append(means.mean())
        between_chains = means.var(ddof=1) if members.sum() > 1 else 0.0
        within.append(between_chains + chain_vars[members].mean())
    between = np.var(super_means, ddof=1)
    w = float(np.mean(within))
    return float(np.sqrt(1 + between / w)) if w > 0 else float("nan")


def _nested_r_hat_column(table: Any, post: Any, names: list[str], groups: int) -> Any:
    """The table with nested R-hat in place of the classic R-hat of a many-chain fit."""
    chains = post.sizes.get("chain", 1)
    labels = np.arange(chains) * groups // chains  # runtime.posterior.superchain_of
    rows = []
    for name in names:
        values = np.asarray(post[name].values, dtype=float)
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        rows += [flat[:, :, j] for j in range(flat.shape[2])]
    if len(rows) != len(table):
        return table
    table = table.drop(columns=["r_hat"], errors="ignore")
    table[NESTED] = [nested_r_hat(r, labels) for r in rows]
    return table


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# Posterior correlation beyond which two coordinates are reported as a ridge, and the most
# coordinates whose correlations are looked at (a matrix of their pairs is computed).
RIDGE = 0.995
RIDGE_COORDINATES = 200


def _ridge(post: Any, names: list[str]) -> str:
    """'a and b are correlated -1.000 in the posterior' for the most correlated pair of
    scalar coordinates beyond RIDGE, or ''."""
    columns, labels = [], []
    for name in names:
        values = np.asarray(post[name].values, dtype=float)
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        if len(labels) + flat.shape[1] > RIDGE_COORDINATES:
            return ""
        for j in range(flat.shape[1]):
            columns.append(flat[:, j])
            labels.append(name if flat.shape[1] == 1 else f"{name}[{j + 1}]")
    if len(columns) < 2 or columns[0].size < 10:
        return ""
    data = np.stack(columns)
    with np.errstate(all="ignore"):
        corr = np.corrcoef(data)
    corr = np.triu(np.nan_to_num(corr), 1)  # each pair once, first name first
    i, j = np.unravel_index(np.argmax(np.abs(corr)), corr.shape)
    if abs(corr[i, j]) < RIDGE:
        return ""
    return f"{labels[i]} and {labels[j]} are correlated {corr[i, j]:.3f} in the posterior"


def _finite_moments(table: Any, post: Any, names: list[str]) -> None:
    """Mean and sd of draws as large as 1e307, which ArviZ's sums overflow to inf: each
    row's draws are scaled by their largest magnitude first, so a finite mean is printed
    as the number it is. Rows follow the variables' elements in C order, as ArviZ's."""
    if "mean" not in table.columns:
        return
    rows = []
    for name in names:
        values = np.asarray(post[name].values, dtype=float)
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        rows += [flat[:, j] for j in range(flat.shape[1])]
    if len(rows) != len(table):
        return
    for i, draws in enumerate(rows):
        if np.isfinite(table.iloc[i]["mean"]) and ("sd" not in table.columns or
                                                   np.isfinite(table.iloc[i]["sd"])):
            continue
        if not np.all(np.isfinite(draws)):
            continue
        with np.errstate(all="ignore"):
            scale = float(np.max(np.abs(draws))) or 1.0
            scaled = draws / scale
            table.iloc[i, table.columns.get_loc("mean")] = float(np.mean(scaled)) * scale
            if "sd" in table.columns and draws.size > 1:
                table.iloc[i, table.columns.get_loc("sd")] = \
                    float(np.std(scaled, ddof=1)) * scale


# Draws this large in magnitude (or infinite) are a tail no estimate of a mean, a variance,
# an ESS or an R-hat can summarise.
HEAVY = 1e100


def _heavy_tails(post: Any, names: list[str]) -> str:
    """'x reaches 1.2e+307, y reaches inf' for the variables with such draws."""
    found = []
    for name in names:
        values = np.asarray(post[name].values, dtype=float)
        with np.errstate(all="ignore"):
            largest = float(np.nanmax(np.abs(values))) if values.size else 0.0
        if largest > HEAVY:
            found.append(f"{name} reaches {largest:.3g}")
    return ", ".join(found[:5])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings numpy and ArviZ raise about their own computations ('Mean of
    empty slice', overflow in a variance, `varsd = varvar / evar / 4`): the summary and its
    warnings below are what the user needs, in bgm's words (ArviZ's logger is quieted
    where it is imported, runtime.output.arviz)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas' about ArviZ's calls
        yield


def _constant(values: np.ndarray) -> bool:
    flat = values.reshape(values.shape[0] * values.shape[1], -1) if values.ndim > 1 else values
    return bool(flat.shape[0] > 1 and np.all(flat == flat[:1]))


def _value_text(values: np.ndarray) -> str:
    first = values[0, 0]
    return f"{float(first):.6g}" if first.ndim == 0 else \
        np.array2string(first, precision=6, threshold=10)


def _empty_table() -> Any:
    import pandas as pd  # noqa: PLC0415 - ArviZ's own dependency
    return pd.DataFrame(columns=["r_hat", "ess_bulk", "ess_tail"])


def _format(table: Any) -> str:
    """Four significant digits for estimates, whole numbers for effective sample sizes
    (as CmdStan and PyMC print them), R-hat to three decimals."""
    formatters: dict[str, Any] = {}
    for column in table.columns:
        if column.startswith("ess"):
            formatters[column] = lambda x: "nan" if not np.isfinite(x) else f"{x:.0f}"
        elif column in ("r_hat", NESTED):
            formatters[column] = lambda x: f"{x:.3f}"
        else:
            formatters[column] = lambda x: f"{x:.4g}"
    return str(table.to_string(formatters=formatters))


def compare(fits: dict[str, Any], ic: str = "loo", data_given: bool = False) -> str:
    """ArviZ's comparison table of fits (InferenceData with a log_likelihood group, or
    ELPDData computed from the model by runtime/loo.py), with what its warning column
    means."""
    az = arviz()
    for name, idata in fits.items():
        if not isinstance(idata, az.ELPDData) and not hasattr(idata, "log_likelihood"):
            raise ModelError(f"the fit '{name}' has no log_likelihood group: "
                             f"{_why_no_log_likelihood(idata, data_given)}")
    fits = {name: without_certain_observations(idata) for name, idata in fits.items()}
    with quiet():
        table = az.compare(fits, ic=ic)
    legend = ("warning: True where the Pareto k of some observation is above good_k (0.7 "
              "at most): PSIS-LOO is unreliable for that fit" if ic == "loo" else
              "warning: True where the WAIC variance of some observation is above 0.4: WAIC "
              "is unreliable for that fit")
    return table.to_string() + "\n" + legend


def certain(samples: np.ndarray) -> np.ndarray:
    """Which observations of `samples` [observations, draws] have log-likelihood exactly 0
    at every draw: certain under the whole posterior. They add nothing to LOO or WAIC
    (their term is 0 either way), but a constant column has no Pareto tail, so its k would
    flag the fit as unreliable. They are the padding past a ragged loop's end (the density
    masks it to exactly 0, runtime/ragged.py), or observations of probability one."""
    return np.all(samples == 0, axis=-1)


def without_certain_observations(idata: Any) -> Any:
    """`idata` with its pointwise log-likelihood flattened to the observations that are
    not certain (`certain`), each variable's over one `NAME_obs` dim; unchanged when every
    observation is uncertain (or it is ArviZ's ELPDData already)."""
    if not hasattr(idata, "log_likelihood") or not hasattr(idata, "posterior"):
        return idata
    import xarray as xr  # noqa: PLC0415  (ArviZ's own dependency)
    flat = {name: np.asarray(v).reshape(v.shape[0], v.shape[1], -1)
            for name, v in idata.log_likelihood.data_vars.items()}
    drop = {name: certain(np.moveaxis(v, -1, 0).reshape(v.shape[-1], -1))
            for name, v in flat.items()}
    if not any(d.any() for d in drop.values()):
        return idata
    kept = xr.Dataset({name: (("chain", "draw", f"{name}_obs"), v[..., ~drop[name]])
                       for name, v in flat.items()})
    return arviz().InferenceData(posterior=idata.posterior, log_likelihood=kept)


def _why_no_log_likelihood(idata: Any, data_given: bool) -> str:
    """Why a posterior fit has no pointwise log-likelihood, and what to do."""
    attrs = getattr(idata, "attrs", {})
    if "pointwise log-likelihood" in str(attrs.get("left_out", "")):
        return ("it was left out for its size; give the fit's data with --data and compare "
                "computes LOO from the model")
    if attrs.get("log_likelihood") == "never":
        return "it was fitted with --log-likelihood never; refit, or give --data"
    if str(attrs.get("method", "")).startswith("adversarial") or \
            "nets" in getattr(idata, "groups", lambda: [])():
        return "a model with nets (a VAE, a GAN, a diffusion model) is not compared by LOO"
    return ("its model has no pointwise log-likelihood: its observations are not independent "
            "given its continuous latents (a hidden Markov model, a change point), so LOO "
            "and WAIC do not apply")


def posterior_latents(idata: Any, names: list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    """n draws (with replacement when n exceeds the pool) from the pooled posterior."""
    post = idata.posterior if "posterior" in idata.groups() else {}  # nets only: no draws
    nets = getattr(idata, "nets", None) if "nets" in idata.groups() else None
    if nets is not None:  # the same weights in every draw
        found = {x: np.repeat(np.asarray(nets[x])[0, :1], n, axis=0) for x in names
                 if x in nets and x not in post}
        names = [x for x in names if x not in found]
    else:
        found = {}
    missing = [x for x in names if x not in post]
    if missing:
        raise ModelError(f"the fit has no draws of {', '.join(missing)}: was it made by a "
                         "different model?")
    pooled = {x: np.asarray(post[x]).reshape((-1,) + np.asarray(post[x]).shape[2:])
              for x in names}
    if not pooled:
        return found
    total = next(iter(pooled.values())).shape[0]
    rng = np.random.default_rng(seed)
    pick = rng.choice(total, size=n, replace=n > total) if n != total else np.arange(total)
    return {**{x: v[pick] for x, v in pooled.items()}, **found}
