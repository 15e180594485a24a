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

__all__ = ["DiscretePosterior", "Evaluation", "evaluate", "inference_data", "VALUE_LIMIT",
           "chunk_draws", "data_values", "log_prob_in_chunks"]

# An output group that grows with the data (the pointwise log-likelihood, a deterministic
# node over a plate, draws of a summed-out discrete latent) is kept only while all its
# draws hold at most this many values: 10^8 float64 values are 800 MB, and a group of
# draws x rows is what made a fit of 10^6 rows need tens of GB. Above it the group is left
# out, the fit says so, and `bgmc compare` computes LOO from the model in blocks.
VALUE_LIMIT = 10**8
# The model is run at a chunk of draws at once, as many as keep the largest array of the
# chunk near this many values (the log density's intermediates are a few times that).
CHUNK_VALUES = 2**22
MAX_CHUNK = 256


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
    * `discrete`: the posterior of the summed-out discrete latents, None when there are none;
    * `left_out`: one sentence per group left out for its size (see VALUE_LIMIT).
    """

    posterior: dict[str, np.ndarray]
    nets: dict[str, np.ndarray]
    log_likelihood: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]
    discrete: DiscretePosterior | None
    left_out: tuple[str, ...] = ()


def inference_data(model: Any, theta: torch.Tensor, stats: dict[str, torch.Tensor],
                   attrs: dict[str, Any], log_likelihood: str = "auto") -> Any:
    """theta: [chains, draws, dim] unconstrained draws; `stats` the sampler's statistics
    [chains, draws] and `attrs` the fit's attributes (its `seed` seeds the discrete draws).
    The model evaluated at the draws (`evaluate`) as an ArviZ InferenceData
    (runtime.output.build_inference_data); what was left out for its size is said in the
    attribute `left_out`."""
    evaluation = evaluate(model, theta, int(attrs.get("seed", 0)), log_likelihood)
    attrs = {**attrs, "log_likelihood": log_likelihood}
    if evaluation.left_out:
        attrs = {**attrs, "left_out": " ".join(evaluation.left_out)}
    return build_inference_data(evaluation, {k: _numpy(v) for k, v in stats.items()}, attrs)


def chunk_draws(chains: int, per_draw: int) -> int:
    """How many draws (per chain) to run the model at at once, for arrays of `per_draw`
    values per draw (CHUNK_VALUES)."""
    return max(1, min(MAX_CHUNK, CHUNK_VALUES // max(1, chains * per_draw)))


def log_prob_in_chunks(model: Any, theta: torch.Tensor, mode: Mode | None = None
                       ) -> torch.Tensor:
    """model.log_prob at draws theta [chains, draws, dim] a chunk of draws at a time, so
    memory follows the chunk, not the number of draws."""
    chains, draws, _ = theta.shape
    step = chunk_draws(chains, data_values(model))
    with torch.no_grad():
        return torch.cat([model.log_prob(theta[:, i:i + step], mode)
                          for i in range(0, draws, step)], dim=1)


def data_values(model: Any) -> int:
    """Values in the observed data: the size of the log density's largest intermediates."""
    total = 0
    for name in getattr(model, "observed_names", ()):
        value = getattr(model, "data", {}).get(name) if hasattr(model, "data") else None
        if isinstance(value, torch.Tensor):
            total += int(value.numel())
    return max(total, 1)


def evaluate(model: Any, theta: torch.Tensor, seed: int = 0,
             log_likelihood: str = "auto", limit: int | None = None) -> Evaluation:
    """Run `model` at the unconstrained draws theta [chains, draws, dim], a chunk of draws
    at a time; `seed` seeds the draws of the summed-out discrete latents.
    `log_likelihood`: "always", "never", or "auto" (kept while at most `limit` values);
    deterministic nodes and discrete draws over `limit` are left out and said."""
    c, s, _ = theta.shape
    limit = VALUE_LIMIT if limit is None else limit
    sizes = _sizes_per_draw(model, theta[:, :1], log_likelihood != "never")
    deterministic = set(getattr(model, "deterministic_names", ()))
    too_big = {name for name, size in sizes.items() if c * s * size > limit}
    left_out = [f"{_described(name, model)} has {sizes[name]} values per draw: "
                f"{c} x {s} draws would hold {c * s * sizes[name]:.3g} values, over the "
                f"limit of {limit:.0e}, so it is left out of the fit"
                for name in sizes if name in too_big and
                (name in deterministic or name.startswith("discrete:"))]
    pointwise_size = sum(size for name, size in sizes.items() if name.startswith("ll:"))
    keep_ll = log_likelihood == "always" or \
        log_likelihood == "auto" and c * s * pointwise_size <= limit
    if log_likelihood == "auto" and pointwise_size and not keep_ll:
        left_out.append(f"the pointwise log-likelihood ({c} x {s} draws x {pointwise_size} "
                        f"observations = {c * s * pointwise_size:.3g} values, over the "
                        f"limit of {limit:.0e}) is left out; 'bgmc compare --data' computes "
                        "LOO from the model in blocks ('--log-likelihood always' keeps it)")
    step = chunk_draws(c, max([data_values(model), *sizes.values()]))
    posterior, pointwise = _DrawArrays(s), _DrawArrays(s)
    discrete = _DiscreteAccumulator(seed, {n[9:] for n in too_big if n.startswith("discrete:")})
    with torch.no_grad():
        for start in range(0, s, step):
            block = theta[:, start:start + step]
            for name, value in model.constrain(block).items():
                if name not in too_big or name not in deterministic:
                    posterior.put(name, start, _numpy(value))
            if not _has_density(model):
                continue
            acc = model.accumulate(block, Mode(jacobian=False, priors=True), record=True)
            for name, value in (acc.pointwise if keep_ll else {}).items():
                if tuple(value.shape[:2]) != tuple(block.shape[:2]):
                    value = value.expand(tuple(block.shape[:2]) + tuple(value.shape))
                pointwise.put(name, start, _numpy(value))
            discrete.add(acc)
    # in the model's order (its variables as the file declares or first defines them),
    # which is the order a summary shows them in
    order = {name: i for i, name in enumerate(getattr(model, "locations", {}))}
    post = {k: posterior.arrays[k]
            for k in sorted(posterior.arrays, key=lambda k: order.get(k, len(order)))}
    nets = {k: post.pop(k)[0, 0] for k in getattr(model, "net_names", ()) if k in post}
    loglik = pointwise.arrays
    observed = {k: _numpy(torch.as_tensor(model.data[k])) for k in model.observed_names
                if k in model.data}
    return Evaluation(posterior=post, nets=nets, log_likelihood=loglik, observed=observed,
                      discrete=discrete.result(), left_out=tuple(left_out))


class _DrawArrays:
    """Arrays [chains, draws, ...] filled a chunk of draws at a time, allocated whole at
    the first chunk: joining the chunks at the end would hold every value twice."""

    def __init__(self, draws: int):
        self.draws = draws
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, name: str, start: int, value: np.ndarray) -> None:
        array = self.arrays.get(name)
        if array is None:
            array = np.empty((value.shape[0], self.draws) + value.shape[2:], value.dtype)
            self.arrays[name] = array
        array[:, start:start + value.shape[1]] = value


def _has_density(model: Any) -> bool:
    """A GAN has no density, and a diffusion model only a random bound."""
    return not (getattr(model, "implicit_names", ()) or getattr(model, "diffusion_names", ()))


def _sizes_per_draw(model: Any, probe: torch.Tensor, pointwise: bool) -> dict[str, int]:
    """Values per draw of each output array, from the model run at one draw per chain:
    posterior variables by name, pointwise log-likelihoods as "ll:NAME", draws of a
    summed-out discrete latent as "discrete:NAME"."""
    c = probe.shape[0]
    with torch.no_grad():
        sizes = {name: int(value.numel()) // c for name, value in model.constrain(probe).items()}
        if not _has_density(model):
            return sizes
        acc = model.accumulate(probe, Mode(jacobian=False, priors=True), record=True)
    if pointwise:
        sizes.update({f"ll:{name}": int(value[0, 0].numel()) if value.dim() >= 2 else 1
                      for name, value in acc.pointwise.items()})
    for name, phi in acc.chains.items():  # [C, S, N..., T, K, K]: N... paths of T values
        sizes[f"discrete:{name}"] = int(phi[0, 0, ..., 0, 0].numel())
    for name, log_cond in acc.conditionals.items():  # [K, C, S, plate...]
        sizes[f"discrete:{name}"] = int(log_cond[0, 0, 0].numel())
    return sizes


def _described(name: str, model: Any) -> str:
    if name.startswith("discrete:"):
        return f"the draws of the summed-out '{name[9:]}' (its marginals and mode are kept)"
    return f"the deterministic node '{name}'"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class _DiscreteAccumulator:
    """Collects the DiscretePosterior chunk by chunk of draws (see there for what is kept)."""

    def __init__(self, seed: int, undrawn: set[str] = frozenset()):  # type: ignore[assignment]
        self.generator = torch.Generator().manual_seed(seed)
        self.undrawn = undrawn  # latents whose draws are too many to keep
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
            if name not in self.undrawn:
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
        draw whose best path scores highest (the joint mode among the draws). With one
        chain per element of plates (phi [C, S, N..., T, K, K]) a draw's score is the sum
        over its sequences, and its path holds each sequence's Viterbi path."""
        from runtime import hmm  # noqa: PLC0415
        self.values[name] = values
        index = hmm.sample_paths(phi, self.generator)  # [C, S, T]
        if name not in self.undrawn:
            self.draws.setdefault(name, []).append(values[index].numpy())
        self.prob_sum[name] = self.prob_sum.get(name, 0) + hmm.marginals(phi).sum(dim=(0, 1))
        path, score = hmm.viterbi(phi, with_score=True)
        score = score.reshape(score.shape[0] * score.shape[1], -1).sum(-1)
        best = int(score.argmax())
        if float(score[best]) > self.best_score.get(name, -float("inf")):
            self.best_score[name] = float(score[best])
            self.best_path[name] = values[path.reshape(-1, *path.shape[2:])[best]].numpy()

    def result(self) -> DiscretePosterior | None:
        """The arrays, or None when the model has no summed-out discrete latents."""
        if not self.prob_sum:
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
