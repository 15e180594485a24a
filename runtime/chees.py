"""Many-chain HMC in lockstep, tuned by ChEES (Hoffman, Radul and Sountsov, AISTATS 2021).

Why a second sampler next to NUTS: eager PyTorch pays about the same per-operation
overhead for one chain as for a thousand, and batched NUTS makes every chain wait for the
deepest tree in the batch. Here every chain takes the same number of leapfrog steps in an
iteration, so one batched call of the log density and its gradient serves all chains at
every step, with no chain waiting on another. What NUTS chooses per chain (how far to
go) is learnt once for all chains during warmup instead:

- a shared step size, by dual averaging of the harmonic mean of the chains' acceptance
  probabilities towards 0.651 (the optimum for HMC, Beskos et al. 2013);
- a shared trajectory length T, by gradient ascent (Adam, in log T) on the ChEES criterion,
  the change in the expected squared distance of each chain from the mean of all chains,
  whose gradient needs only each chain's start, end and final momentum;
- a diagonal or dense metric, estimated from the draws of all chains pooled over a window
  (64 chains x 40 iterations is 2 560 draws where Stan's first window has 25), so warmup
  is short.

Each iteration runs ceil(u_t T / eps) leapfrog steps with u_t from a Halton sequence
(jitter, which breaks the resonances a fixed length has, with fewer draws of it than
uniform noise needs). A chain whose energy error exceeds 1000 anywhere on its trajectory
is divergent and keeps its point; a point where the log density is not finite is a
rejected point, as in NUTS (runtime/nuts.py `_potential_of`).

Chains are started in `superchains` groups that share a starting point, so that nested
R-hat (Margossian et al. 2022) can check many short chains (runtime/diagnostics.py).
Every chain draws its momentum and its accept/reject number from its own stream
(runtime/streams.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from runtime.model import numerical_failure
from runtime.nuts import (
    MAX_DELTA_H,
    DualAveraging,
    Metric,
    _estimate,
    _potential_of,
    initial_density,
)
from runtime.streams import ChainStreams

TARGET_ACCEPT = 0.651
# Adam on log T as in TFP's and BlackJAX's ChEES: no momentum, a short memory of the
# gradient's scale, steps clipped to about log(2) / 2.
LEARNING_RATE, BETA2, ADAM_EPS, LOG_STEP_CLIP = 0.025, 0.95, 1e-8, 0.35
AVERAGING_DECAY = 0.5  # weight t^-0.5 of iteration t in the averages of log eps and log T


@dataclass
class CheesSettings:
    chains: int = 64
    warmup: int = 400
    draws: int = 100
    superchains: int = 4  # groups of chains sharing a start, for nested R-hat
    adapt_delta: float = TARGET_ACCEPT  # target of the harmonic mean acceptance
    metric: str = "diag"  # diag | dense
    max_leapfrog: int = 1000
    init_step_size: float = 1.0
    laplace: bool = True  # start from the curvature at a mode (see `laplace_metric`)
    seed: int = 1
    thin: int = 1
    save_warmup: bool = False


@dataclass
class CheesResult:
    draws: torch.Tensor  # [chains, draws, dim] unconstrained
    stats: dict[str, torch.Tensor]  # each [chains, draws]
    step_size: float
    trajectory_length: float
    metric: torch.Tensor  # [dim] or [dim, dim], shared by all chains
    warmup_draws: torch.Tensor | None = None
    warmup_stats: dict[str, torch.Tensor] | None = None


def halton(index: int, base: int = 2) -> float:
    """The index-th element (from 1) of the van der Corput sequence in `base`, in (0, 1)."""
    result, f = 0.0, 1.0 / base
    while index > 0:
        result += f * (index % base)
        index //= base
        f /= base
    return result


def windows(warmup: int) -> list[int]:
    """Iterations after which the metric is re-estimated from the pooled draws of the
    window before: at 20%, 35%, 55% and 80% of warmup (the last fifth tunes the step size
    and trajectory length to the final metric only). Empty below 20 iterations."""
    if warmup < 20:
        return []
    return sorted({int(warmup * f) for f in (0.2, 0.35, 0.55, 0.8)})


class _Adaptation:
    """The shared step size and trajectory length, and their running averages."""

    def __init__(self, step: float, delta: float, max_leapfrog: int):
        self.delta, self.max_leapfrog = delta, max_leapfrog
        self.restart(step, step)

    def restart(self, step: float, length: float) -> None:
        self.dual = DualAveraging(torch.tensor([step], dtype=torch.float64), self.delta)
        self.step = step
        self.log_length = math.log(length)
        self.second_moment = 0.0
        self.t = 0
        self.log_step_avg = math.log(step)
        self.log_length_avg = math.log(length)

    @property
    def length(self) -> float:
        return min(max(math.exp(self.log_length_avg), self.step),
                   self.max_leapfrog * self.step)

    def update(self, accept: torch.Tensor, divergent: torch.Tensor,
               gradient: float | None) -> None:
        self.t += 1
        weight = self.t ** -AVERAGING_DECAY
        ok = ~divergent & (accept > 0)
        harmonic = float(ok.sum() / (1.0 / accept[ok]).sum()) if bool(ok.any()) else 0.0
        step = float(self.dual.update(torch.tensor([harmonic], dtype=torch.float64))[0])
        if math.isfinite(step) and step > 0:
            self.step = step
        self.log_step_avg = (1 - weight) * self.log_step_avg + weight * math.log(self.step)
        if gradient is not None and math.isfinite(gradient):
            self.second_moment = BETA2 * self.second_moment + (1 - BETA2) * gradient ** 2
            unbiased = self.second_moment / (1 - BETA2 ** self.t)
            move = LEARNING_RATE * gradient / (math.sqrt(unbiased) + ADAM_EPS)
            self.log_length += max(-LOG_STEP_CLIP, min(LOG_STEP_CLIP, move))
        self.log_length_avg = (1 - weight) * self.log_length_avg + weight * self.log_length

    def final(self) -> tuple[float, float]:
        step = math.exp(self.log_step_avg)
        length = min(max(math.exp(self.log_length_avg), step), self.max_leapfrog * step)
        return step, length


def chees_gradient(start: torch.Tensor, end: torch.Tensor, p_end: torch.Tensor,
                   accept: torch.Tensor, divergent: torch.Tensor, metric: Metric,
                   jitter: float, length: float) -> float | None:
    """The ChEES criterion's gradient in log T, averaged over chains weighted by their
    acceptance probabilities. Distances are measured in the metric's whitened
    coordinates (|x|^2 = x' M x), in which d|x - mean|^2 / dt = 2 (x - mean) . p."""
    w = torch.where(divergent | ~torch.isfinite(end).all(-1), torch.zeros_like(accept),
                    accept)
    if float(w.sum()) <= 0:
        return None
    end = torch.where(w[:, None] > 0, end, start)
    end_c = end - (w[:, None] * end).sum(0) / w.sum()
    start_c = start - start.mean(0)

    def squared(x: torch.Tensor) -> torch.Tensor:
        mass = torch.linalg.inv(metric.inverse[0]) if metric.dense else 1.0 / metric.inverse
        return (x * (x @ mass if metric.dense else x * mass)).sum(-1)

    each = jitter * length * (squared(end_c) - squared(start_c)) * (end_c * p_end).sum(-1)
    each = torch.where(w > 0, each, torch.zeros_like(each))
    return float((w * each).sum() / w.sum())


def _trajectory(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                metric: Metric, q: torch.Tensor, lp: torch.Tensor, g: torch.Tensor,
                p: torch.Tensor, step: float, steps: int) -> tuple[torch.Tensor, ...]:
    """`steps` leapfrog steps of every chain: (q, lp, g, p at the end, the largest energy
    error on the way, the energy at the start)."""
    h0 = -lp + metric.kinetic(p)
    worst = torch.zeros_like(lp)
    p = p + 0.5 * step * g
    for i in range(steps):
        q = q + step * metric.velocity(p)
        lp, g = potential(q)
        last = i + 1 == steps
        p = p + (0.5 if last else 1.0) * step * g
        if last:
            error = -lp + metric.kinetic(p) - h0
        else:  # the energy at a full step, from the half-step momentum's neighbours
            error = -lp + metric.kinetic(p - 0.5 * step * g) - h0
        worst = torch.maximum(worst, torch.nan_to_num(error, nan=math.inf))
    return q, lp, g, p, worst, h0


def sample(log_prob: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
           settings: CheesSettings, progress: Any = None) -> CheesResult:
    """Warmup and sampling of every chain in lockstep; init is [chains, dim]."""
    potential = _potential_of(log_prob)
    c, d = init.shape
    streams = ChainStreams(settings.seed, list(range(c)), init.dtype, init.device)
    dense = settings.metric == "dense"
    metric = _shared(torch.ones(d, dtype=init.dtype, device=init.device), c, dense)
    q = init
    lp, g = initial_density(potential, q, "chees")
    if settings.laplace:
        distinct, group = torch.unique(init, dim=0, return_inverse=True)
        found = laplace_metric(log_prob, potential, distinct, dense)
        if found is not None:
            modes, inverse = found
            metric = _shared(inverse, c, dense)
            q = modes[group]
            lp, g = potential(q)
    step = _initial_step(potential, metric, q, lp, g, settings.init_step_size, streams)
    adapt = _Adaptation(step, settings.adapt_delta, settings.max_leapfrog)
    ends = windows(settings.warmup)
    window: list[torch.Tensor] = []
    kept: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    stats: dict[bool, dict[str, list[torch.Tensor]]] = {True: {}, False: {}}
    total = settings.warmup + settings.draws
    divergences = torch.zeros(c, dtype=torch.long)
    step, length = adapt.step, adapt.length
    for i in range(total):
        warm = i < settings.warmup
        jitter = halton(i + 1)
        steps = max(1, min(settings.max_leapfrog, math.ceil(jitter * length / step)))
        p = metric.draw_momentum(streams)
        q1, lp1, g1, p1, worst, h0 = _trajectory(potential, metric, q, lp, g, p, step, steps)
        divergent = worst > MAX_DELTA_H
        log_accept = torch.nan_to_num(h0 - (-lp1 + metric.kinetic(p1)), nan=-math.inf)
        accept = torch.where(divergent, torch.zeros_like(lp), log_accept.clamp(max=0).exp())
        take = ~divergent & (torch.log(streams.uniform()) < log_accept)
        start = q
        q = torch.where(take[:, None], q1, q)
        lp = torch.where(take, lp1, lp)
        g = torch.where(take[:, None], g1, g)
        if warm:
            adapt.update(accept, divergent,
                         chees_gradient(start, q1, p1, accept, divergent, metric, jitter,
                                        length))
            step, length = adapt.step, adapt.length
            if ends and ends[0] <= i + 1 <= ends[-1]:
                window.append(q)
            if ends and i + 1 in ends[1:]:
                before = metric
                metric = _shared(_pooled(window, dense), c, dense)
                window = []
                step = _initial_step(potential, metric, q, lp, g, step, streams)
                adapt.restart(step, max(length * _rescale(before, metric), step))
                step, length = adapt.step, adapt.length
            if i + 1 == settings.warmup:
                step, length = adapt.final()
        else:
            divergences += divergent.long().cpu()
        if (warm and settings.save_warmup) or not warm:
            index = i if warm else i - settings.warmup
            if index % settings.thin == 0:
                kept[warm].append(q)
                row = {"lp": lp, "acceptance_rate": accept,
                       "step_size": torch.full_like(lp, step),
                       "n_steps": torch.full((c,), steps, dtype=torch.long, device=lp.device),
                       "diverging": divergent, "energy": h0}
                for k, v in row.items():
                    stats[warm].setdefault(k, []).append(v)
        if progress is not None:
            progress(i + 1, total, warm, divergences)

    def stacked(warm: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor] | None]:
        if not kept[warm]:
            return None, None
        return torch.stack(kept[warm], 1), {k: torch.stack(v, 1)
                                            for k, v in stats[warm].items()}

    draws, draw_stats = stacked(False)
    warm_draws, warm_stats = stacked(True)
    return CheesResult(draws=draws if draws is not None else torch.empty(c, 0, d),
                       stats=draw_stats or {}, step_size=step, trajectory_length=length,
                       metric=metric.inverse[0], warmup_draws=warm_draws,
                       warmup_stats=warm_stats)


# The mode is looked for with at most this many L-BFGS iterations, and its curvature is
# computed by central differences of the gradient (2 x dim points in one batched call)
# for at most this many coordinates.
LAPLACE_ITERATIONS, LAPLACE_MAX_DIM = 200, 200


def laplace_metric(log_prob: Callable[[torch.Tensor], torch.Tensor],
                   potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   starts: torch.Tensor, dense: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(the modes found from `starts` [K, dim] (a start whose search fails is kept as it
    is), the inverse metric of a Laplace approximation at the best of them: the inverse
    of the negative Hessian of the log density), or None where there is no usable mode
    (none within LAPLACE_ITERATIONS, as in a funnel whose density grows without bound
    towards its neck, or a curvature that is not positive definite).

    Why: warmup pools all chains, but pooled draws teach the metric only once the chains
    move, and under the identity metric a regression on uncentred predictors
    (kilpisjarvi: correlation -0.99999, sds 30 and 0.0075) allows steps of 1e-5 along a
    ridge 100 long. Stan's long per-chain warmup gets there by brute force; the curvature
    at the mode, as in Pathfinder (Zhang et al. 2022), gives the right shape at once, and
    the pooled windows then correct it for non-Gaussian posteriors. Each superchain
    starts from the mode its own start leads to, so that superchains that find different
    modes show it in nested R-hat."""
    k, d = starts.shape
    if d == 0 or d > LAPLACE_MAX_DIM:
        return None
    modes = torch.stack([_mode(log_prob, potential, x) for x in starts])
    lp, g = potential(modes)
    finite = torch.isfinite(lp) & (g.abs().amax(-1) <= 1e-3 * modes.abs().amax(-1).clamp(min=1))
    if not bool(finite.any()):
        return None
    best = modes[int(torch.where(finite, lp, torch.full_like(lp, -math.inf)).argmax())]
    h = 1e-5 * torch.clamp(best.abs(), min=1.0)
    eye = torch.diag(h)
    _, up = potential(best + eye)
    _, down = potential(best - eye)
    hessian = -(up - down) / (2 * h[:, None])
    hessian = 0.5 * (hessian + hessian.T)
    if not bool(torch.isfinite(hessian).all()):
        return None
    values, vectors = torch.linalg.eigh(hessian)
    if float(values.min()) <= 1e-12 * float(values.abs().max()):
        return None
    cov = (vectors / values) @ vectors.T
    starts_at = torch.where(finite[:, None], modes, starts)
    return starts_at, (cov if dense else torch.diagonal(cov).clone())


def _mode(log_prob: Callable[[torch.Tensor], torch.Tensor],
          potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
          start: torch.Tensor) -> torch.Tensor:
    """L-BFGS from `start` towards a mode of the log density; `start` itself when the
    search fails or ends where the density is not finite."""
    x = start.detach().clone()[None].requires_grad_(True)
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=LAPLACE_ITERATIONS,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-8,
                                  tolerance_change=1e-14, history_size=20)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = -log_prob(x).sum()
        if torch.isfinite(value):
            value.backward()
        return value

    try:
        optimiser.step(loss)  # type: ignore[arg-type]
    except Exception as exc:
        if not numerical_failure(exc):
            raise
        return start
    found = x.detach()[0]
    lp, _ = potential(found[None])
    return found if bool(torch.isfinite(lp).all()) and bool(torch.isfinite(found).all()) \
        else start


def _shared(inverse: torch.Tensor, chains: int, dense: bool) -> Metric:
    """One inverse metric for every chain, in the batched form NUTS's Metric takes."""
    if dense and inverse.dim() == 1:
        inverse = torch.diag(inverse)
    return Metric(inverse.expand((chains,) + inverse.shape), dense)


def _rescale(before: Metric, after: Metric) -> float:
    """How a trajectory length learnt under `before` reads under `after`: the length was
    set by the widest direction, and distances in whitened coordinates scale by
    sqrt(old variance / new variance); the direction that shrinks most bounds it."""
    old, new = (torch.diagonal(m.inverse[0]) if m.dense else m.inverse[0]
                for m in (before, after))
    return float((old / new).min().sqrt())


def _pooled(window: list[torch.Tensor], dense: bool) -> torch.Tensor:
    """The regularised variance (or covariance) of every chain's draws in the window,
    pooled: chains whose starts differ widely still inflate it, which only widens the
    early metric."""
    draws = torch.stack(window, 1)  # [C, n, D]
    moved = (draws != draws[:, :1]).any(-1).any(-1)
    if int(moved.sum()) >= 2:  # a chain stuck at its start would teach nothing but its place
        draws = draws[moved]
    return _estimate(list(draws.reshape(-1, draws.shape[-1])[None].unbind(1)), dense)[0]


def _initial_step(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                  metric: Metric, q: torch.Tensor, lp: torch.Tensor, g: torch.Tensor,
                  step: float, streams: ChainStreams) -> float:
    """Stan's heuristic on the pooled chains: double or halve one shared step until the
    harmonic mean of one leapfrog's acceptance crosses 0.8."""
    direction: bool | None = None
    for _ in range(50):
        p = metric.draw_momentum(streams)
        _, lp1, _, p1, _, h0 = _trajectory(potential, metric, q, lp, g, p, step, 1)
        log_accept = torch.nan_to_num(h0 - (-lp1 + metric.kinetic(p1)), nan=-math.inf)
        accept = log_accept.clamp(max=0).exp()
        harmonic = float(len(accept) / (1.0 / accept.clamp(min=1e-300)).sum())
        up = harmonic > 0.8
        if direction is None:
            direction = up
        if up != direction or not 1e-10 < step < 1e7:
            break
        step = step * 2 if direction else step / 2
    return step
