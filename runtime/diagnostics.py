"""Summaries Bayesian users check before trusting a fit, computed by ArviZ: mean, sd,
HDI, bulk/tail ESS, R-hat, with warnings for R-hat > 1.01, low ESS, divergences and
saturated tree depth; PSIS-LOO / WAIC model comparison."""
from __future__ import annotations

from typing import Any

import numpy as np

from runtime.errors import ModelError
from runtime.output import arviz

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100


def summarize(idata: Any) -> tuple[str, list[str]]:
    az = arviz()
    table = az.summary(idata, kind="all", round_to=4)
    warnings: list[str] = []
    chains = idata.posterior.sizes.get("chain", 1)
    method = idata.posterior.attrs.get("method", "")
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
    return table.to_string(), warnings


def compare(fits: dict[str, Any], ic: str = "loo") -> str:
    az = arviz()
    for name, idata in fits.items():
        if not hasattr(idata, "log_likelihood"):
            raise ModelError(f"the fit '{name}' has no log_likelihood group: fit it with "
                             "--method nuts or advi; a model whose observations are not "
                             "independent given its continuous latents (a hidden Markov "
                             "model, a change point) has no pointwise log-likelihood for "
                             "LOO or WAIC")
    import warnings  # noqa: PLC0415
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
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
