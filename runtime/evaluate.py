"""Evaluating a fitted model at its draws, for the output: this module's one job.

Given unconstrained draws theta [chains, draws, dim], it runs the model (in chunks of
draws, without gradients) and returns plain NumPy arrays in an `Evaluation`: the
constrained latents and deterministic nodes, a net's weights, the pointwise
log-likelihood (for LOO), the observed data, and the posterior of the summed-out discrete
latents (FFBS draws / Viterbi path of a chain, or draws and marginals of independent ones).
Turning those arrays into an ArviZ InferenceData and writing it is runtime/output.py's
job; `inference_data` composes the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.accumulate import Mode
from runtime.output import build_inference_data

__all__ = ["DiscretePosterior", "Evaluation", "evaluate", "inference_data"]


@dataclass(frozen=True)
class DiscretePosterior:
    """The posterior of the summed-out discrete latents, exactly given each draw of the
    continuous ones (p(z | theta, data) is what the enumeration left before its logsumexp).
    Every dict is keyed by the discrete latent's name, in the same order:

    * `draws` [chains, draws, *shape]: one draw of z per posterior draw, so (theta, z) are
      joint posterior draws (for a chain, by forward filtering backward sampling);
    * `marginals` [*shape, K]: p(z_i = k | data) averaged over the draws (Rao-Blackwellised);
    * `values` [K]: the value of each of the K states (the labels of the marginals' last dim);
    * `modes` [*shape]: the most probable value of each element under the marginals; for a
      chain the Viterbi path of the draw whose best path scores highest (the joint mode
      among the draws).
    """

    draws: dict[str, np.ndarray]
    marginals: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    modes: dict[str, np.ndarray]


@dataclass(frozen=True)
class Evaluation:
    """The model evaluated at every draw, as NumPy arrays (named as in the model).

    * `posterior` [chains, draws, *shape]: latents and deterministic nodes, constrained
      (nets excluded);
    * `nets` [n_weights]: a net's weights, once (they are the same in every draw);
    * `log_likelihood` [chains, draws, *shape]: the pointwise log-likelihood of each
      observed variable (empty when not asked for, or when the model has no density: a GAN,
      a diffusion model);
    * `observed` [*shape]: the observed data the model was given;
    * `discrete`: the posterior of the summed-out discrete latents, None when there are none.
    """

    posterior: dict[str, np.ndarray]
    nets: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    discrete: DiscretePosterior | None


def inference_data(model: Any, theta: torch.Tensor, stats: dict[str, torch.Tensor],
                   attrs: dict[str, Any], chunk: int = 256, pointwise_ll: bool = True) -> Any:
    """theta: [chains, draws, dim] unconstrained draws; `stats` the sampler's statistics
    [chains, draws] and `attrs` the fit's attributes (its `seed` seeds the discrete draws).
    The model evaluated at the draws (`evaluate`) as an ArviZ InferenceData
    (runtime.output.build_inference_data)."""
    evaluation = evaluate(model, theta, int(attrs.get("seed", 0)), chunk, pointwise_ll)
    return build_inference_data(evaluation, {k: _numpy(v) for k, v in stats.items()}, attrs)


def evaluate(model: Any, theta: torch.Tensor, seed: int = 0, chunk: int = 256,
             pointwise_ll: bool = True) -> Evaluation:
    """Run `model` at the unconstrained draws theta [chains, draws, dim], `chunk` draws at a
    time; `seed` seeds the draws of the summed-out discrete latents."""
    _, s, _ = theta.shape
    posterior: dict[str, list[np.ndarray]] = {}
    pointwise: dict[str, list[np.ndarray]] = {}
    discrete = _DiscreteAccumulator(seed)
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
    # in the model's order (its variables as the file declares or first defines them),
    # which is the order a summary shows them in
    order = {name: i for i, name in enumerate(getattr(model, "locations", {}))}
    post = {k: np.concatenate(posterior[k], axis=1)
            for k in sorted(posterior, key=lambda k: order.get(k, len(order)))}
    nets = {k: post.pop(k)[0, 0] for k in getattr(model, "net_names", ()) if k in post}
    loglik = {k: np.concatenate(v, axis=1) for k, v in pointwise.items()}
    observed = {k: _numpy(torch.as_tensor(model.data[k])) for k in model.observed_names
                if k in model.data}
    return Evaluation(posterior=post, nets=nets, log_likelihood=loglik, observed=observed,
                      discrete=discrete.result())


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class _DiscreteAccumulator:
    """Collects the DiscretePosterior chunk by chunk of draws (see there for what is kept)."""

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

    def result(self) -> DiscretePosterior | None:
        """The arrays, or None when the model has no summed-out discrete latents."""
        if not self.draws:
            return None
        marginals: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        modes: dict[str, np.ndarray] = {}
        for name, total in self.prob_sum.items():
            marginals[name] = (total / self.count).numpy()
            values[name] = self.values[name].numpy()
            modes[name] = self.best_path[name] if name in self.best_path else \
                values[name][marginals[name].argmax(-1)]
        draws = {k: np.concatenate(v, axis=1) for k, v in self.draws.items()}
        return DiscretePosterior(draws=draws, marginals=marginals, values=values, modes=modes)
