"""Prediction by Bayes' rule: the posterior of a discrete query variable, exactly.

P(y | x, D) = E_theta[ P(y | x, theta) ] with P(y | x, theta) ∝ P(x | y, theta) P(y | theta):
the enumeration in the log density leaves p(y = k | everything else, theta) before its
logsumexp (Accumulator.conditionals); averaging it over the fit's draws (one draw for a
point estimate) integrates theta out.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runtime.accumulate import Mode


def predict_discrete(model: Any, name: str, given: dict[str, np.ndarray]) -> dict[str, Any]:
    """given: the fit's latent values, each with a leading draw dimension."""
    values = {lat.name: torch.as_tensor(given[lat.name], dtype=model.dtype, device=model.device)
              for lat in model.latents}
    n = next(iter(values.values())).shape[0] if values else 1
    theta = model.unconstrain(values, batch_ndim=1) if values else \
        torch.zeros(n, 0, dtype=model.dtype, device=model.device)
    with torch.no_grad():
        acc = model.accumulate(theta, Mode(jacobian=False, priors=True), record=True)
        log_cond = acc.conditionals[name]  # [K, draws, plate...]
        probs = log_cond.exp().mean(1).movedim(0, -1).cpu()  # [plate..., K]
    labels = acc.values[name].cpu()
    return {"query": name, "values": labels.tolist(), "probabilities": probs.tolist(),
            "prediction": labels[probs.argmax(-1)].tolist(), "draws": int(n)}
