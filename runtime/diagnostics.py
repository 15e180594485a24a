"""Summaries Bayesian users check before trusting a fit, computed by ArviZ: mean, sd,
HDI, bulk/tail ESS, R-hat, with warnings for R-hat > 1.01, low ESS, divergences and
saturated tree depth; PSIS-LOO / WAIC model comparison."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from runtime.errors import ModelError
from runtime.output import arviz

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


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
    text = _format(table) if table is not None else ""
    if constant:
        values = ", ".join(f"{v} = {_value_text(post[v].values)}" for v in constant)
        text += ("\n" if text else "") + f"constant in every draw: {values}"
    table = table if table is not None else _empty_table()
    warnings: list[str] = []
    chains = idata.posterior.sizes.get("chain", 1)
    # the fit's attributes are the InferenceData's own (runtime/output.py), not the group's
    method = str(getattr(idata, "attrs", {}).get("method", ""))
    if chains > 1 and "r_hat" in table:
        bad = table[table["r_hat"] > RHAT_LIMIT]
        if len(bad):
            warnings.append(f"R-hat > {RHAT_LIMIT} for {', '.join(bad.index[:5])}"
                            f"{' ...' if len(bad) > 5 else ''}: the chains disagree")
    if method == "nuts" and "ess_bulk" in table:
        low = table[(table["ess_bulk"] < ESS_PER_CHAIN * chains) |
                    (table["ess_tail"] < ESS_PER_CHAIN * chains)]
        if len(low):
            warnings.append(f"low effective sample size (< {ESS_PER_CHAIN * chains}) for "
                            f"{', '.join(low.index[:5])}{' ...' if len(low) > 5 else ''}")
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        n = int(np.asarray(stats["diverging"]).sum())
        total = int(np.asarray(stats["diverging"]).size)
        if n:
            warnings.append(f"{n} of {total} transitions ({100 * n / total:.1f}%) were "
                            "divergent: raise --adapt-delta or reparameterise (non-centred)")
    if stats is not None and "reached_max_treedepth" in stats:
        n = int(np.asarray(stats["reached_max_treedepth"]).sum())
        if n:
            warnings.append(f"{n} transitions hit the maximum tree depth: raise "
                            "--max-treedepth or try --metric dense")
    return text, warnings


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
        elif column == "r_hat":
            formatters[column] = lambda x: f"{x:.3f}"
        else:
            formatters[column] = lambda x: f"{x:.4g}"
    return str(table.to_string(formatters=formatters))


def compare(fits: dict[str, Any], ic: str = "loo") -> str:
    az = arviz()
    for name, idata in fits.items():
        if not hasattr(idata, "log_likelihood"):
            raise ModelError(f"the fit '{name}' has no log_likelihood group: fit it with "
                             "--method nuts or advi; a model whose observations are not "
                             "independent given its continuous latents (a hidden Markov "
                             "model, a change point) has no pointwise log-likelihood for "
                             "LOO or WAIC")
    with quiet():
        table = az.compare(fits, ic=ic)
    return table.to_string()


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
