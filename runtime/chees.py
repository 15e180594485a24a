"""Many-chain HMC in lockstep, tuned by ChEES (Hoffman, Radul and Sountsov, AISTATS 2021).

Why a second sampler next to NUTS: eager PyTorch pays about the same per-operation
overhead for one chain as for a thousand, so speed comes from many chains per call. NUTS
serves its chains with one batched call per leapfrog step too, none waiting for another
(runtime/nuts_tree.py), but each chain adapts alone, so it needs a long warmup and a long
run per chain. Here every chain takes the same number of leapfrog steps in an iteration,
and what NUTS chooses per chain (how far to go) is learnt once for all chains during a
short warmup instead:

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

Chains of different posteriors can run together (SBC's replications, runtime/sbc.py):
`groups` gives each group of chains its own metric, step size, trajectory length and
centre in the ChEES criterion; an iteration then runs as many leapfrog steps as the
longest group needs, and a chain whose steps are done waits, unchanged.
Every chain draws its momentum and its accept/reject number from its own stream
(runtime/streams.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from runtime.distributed import World
from runtime.model import numerical_failure
from runtime.nuts import (
    DualAveraging,
    Metric,
    _estimate,
    _potential_of,
    initial_density,
)
from runtime.nuts_tree import MAX_DELTA_H
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
    step_size: torch.Tensor  # [groups]
    trajectory_length: torch.Tensor  # [groups]
    metric: torch.Tensor  # [dim] or [dim, dim]: the first group's
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
    """Each group's step size and trajectory length ([G] tensors) and their running
    averages: one group is the usual case (all chains of one posterior)."""

    def __init__(self, step: torch.Tensor, delta: float, max_leapfrog: int,
                 groups: torch.Tensor):
        self.delta, self.max_leapfrog, self.groups = delta, max_leapfrog, groups
        self.restart(step, step)

    def restart(self, step: torch.Tensor, length: torch.Tensor) -> None:
        self.dual = DualAveraging(step.clone(), self.delta)
        self.step = step.clone()
        self.log_length = torch.log(length)
        self.second_moment = torch.zeros_like(step)
        self.t = 0
        self.log_step_avg = torch.log(step)
        self.log_length_avg = torch.log(length)

    @property
    def length(self) -> torch.Tensor:
        return torch.minimum(torch.maximum(self.log_length_avg.exp(), self.step),
                             self.max_leapfrog * self.step)

    def update(self, accept: torch.Tensor, divergent: torch.Tensor,
               gradient: torch.Tensor) -> None:
        self.t += 1
        weight = self.t ** -AVERAGING_DECAY
        ok = ~divergent & (accept > 0)
        inverse = torch.where(ok, 1.0 / accept.clamp(min=1e-300), torch.zeros_like(accept))
        count = torch.zeros_like(self.step).index_add_(0, self.groups, ok.to(accept.dtype))
        total = torch.zeros_like(self.step).index_add_(0, self.groups, inverse)
        harmonic = torch.where(count > 0, count / total.clamp(min=1e-300),
                               torch.zeros_like(total))
        step = self.dual.update(harmonic)
        self.step = torch.where(torch.isfinite(step) & (step > 0), step, self.step)
        self.log_step_avg = (1 - weight) * self.log_step_avg + weight * torch.log(self.step)
        known = torch.isfinite(gradient)
        gradient = torch.where(known, gradient, torch.zeros_like(gradient))
        self.second_moment = torch.where(
            known, BETA2 * self.second_moment + (1 - BETA2) * gradient ** 2,
            self.second_moment)
        unbiased = self.second_moment / (1 - BETA2 ** self.t)
        move = LEARNING_RATE * gradient / (unbiased.sqrt() + ADAM_EPS)
        self.log_length = self.log_length + move.clamp(-LOG_STEP_CLIP, LOG_STEP_CLIP)
        self.log_length_avg = (1 - weight) * self.log_length_avg + weight * self.log_length

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.log_step_avg.exp()
        length = torch.minimum(torch.maximum(self.log_length_avg.exp(), step),
                               self.max_leapfrog * step)
        return step, length


def chees_gradient(start: torch.Tensor, end: torch.Tensor, p_end: torch.Tensor,
                   accept: torch.Tensor, divergent: torch.Tensor, metric: Metric,
                   jitter: float, length: torch.Tensor,
                   groups: torch.Tensor | None = None) -> torch.Tensor:
    """The ChEES criterion's gradient in log T per group ([G]; NaN for a group with no
    accepted proposal), averaged over its chains weighted by their acceptance
    probabilities; `length` is each group's trajectory length. Distances are measured
    in the metric's whitened coordinates (|x|^2 = x' M x), in which
    d|x - mean|^2 / dt = 2 (x - mean) . p."""
    w = torch.where(divergent | ~torch.isfinite(end).all(-1), torch.zeros_like(accept),
                    accept)
    end = torch.where(w[:, None] > 0, end, start)
    if groups is None:
        groups = torch.zeros(len(start), dtype=torch.long, device=start.device)
    end_c = end - _group_mean(end, w, groups)
    start_c = start - _group_mean(start, torch.ones_like(w), groups)

    def squared(x: torch.Tensor) -> torch.Tensor:
        if metric.dense:
            return (x * torch.linalg.solve(metric.inverse, x[..., None])[..., 0]).sum(-1)
        return (x * x / metric.inverse).sum(-1)

    each = jitter * length[groups] * (squared(end_c) - squared(start_c)) * \
        (end_c * p_end).sum(-1)
    each = torch.where(w > 0, each, torch.zeros_like(each))
    g = len(length)
    total = torch.zeros(g, dtype=w.dtype, device=w.device).index_add_(0, groups, w * each)
    weight = torch.zeros(g, dtype=w.dtype, device=w.device).index_add_(0, groups, w)
    return torch.where(weight > 0, total / weight.clamp(min=1e-300),
                       torch.full_like(total, math.nan))


def _group_mean(x: torch.Tensor, w: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each chain's row replaced by the w-weighted mean of its group's rows."""
    g = int(groups.max()) + 1
    total = torch.zeros((g,) + x.shape[1:], dtype=x.dtype, device=x.device)
    total.index_add_(0, groups, w[:, None] * x)
    weight = torch.zeros(g, dtype=x.dtype, device=x.device).index_add_(0, groups, w)
    return (total / weight.clamp(min=1e-300)[:, None])[groups]


def _trajectory(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                metric: Metric, q: torch.Tensor, lp: torch.Tensor, g: torch.Tensor,
                p: torch.Tensor, step: torch.Tensor, steps: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
    """Leapfrog steps of every chain, `steps` [C] of size `step` [C] each (a chain whose
    steps are done waits, unchanged, for the others): (q, lp, g, p at the end, the
    largest energy error on the way, the energy at the start)."""
    h0 = -lp + metric.kinetic(p)
    worst = torch.zeros_like(lp)
    eps = step[:, None]
    p = p + 0.5 * eps * g
    longest = int(steps.max())
    for i in range(longest):
        going = steps > i
        last = (steps == i + 1)[:, None]
        q_next = q + eps * metric.velocity(p)
        lp_next, g_next = potential(q_next)
        p_next = p + torch.where(last, 0.5, 1.0) * eps * g_next
        # the energy at a full step, from the half-step momentum's neighbours
        full = torch.where(last, p_next, p_next - 0.5 * eps * g_next)
        error = torch.nan_to_num(-lp_next + metric.kinetic(full) - h0, nan=math.inf)
        if i + 1 < int(steps.min()):  # every chain still going: no masking needed
            q, lp, g, p = q_next, lp_next, g_next, p_next
            worst = torch.maximum(worst, error)
            continue
        q = torch.where(going[:, None], q_next, q)
        lp = torch.where(going, lp_next, lp)
        g = torch.where(going[:, None], g_next, g)
        p = torch.where(going[:, None], p_next, p)
        worst = torch.where(going, torch.maximum(worst, error), worst)
    return q, lp, g, p, worst, h0


def sample(log_prob: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
           settings: CheesSettings, progress: Any = None,
           groups: torch.Tensor | None = None) -> CheesResult:
    """Warmup and sampling of every chain in lockstep; init is [chains, dim].

    On several ranks (runtime/distributed.py) each runs its block of the chains, and
    the adaptation, shared by all chains, is computed on every rank from every chain's
    acceptance and end points (gathered), as one process would: the draws are the same.

    `groups` (the 0-based group of each chain) gives each group its own adaptation, for
    chains of different posteriors run together (SBC's replications, runtime/sbc.py);
    with `settings.laplace`, every chain's own mode is then looked for, by Newton steps
    taken for all chains at once."""
    potential = _potential_of(log_prob)
    world = World.current()  # this rank's chains; the adaptation sees every chain
    mine = world.chains(init.shape[0]) if world.distributed else range(init.shape[0])
    pool = world.all_chains if world.distributed else _itself
    c, d = len(mine), init.shape[1]
    streams = ChainStreams(settings.seed, list(mine), init.dtype, init.device)
    dense = settings.metric == "dense"
    if groups is None:
        groups = torch.zeros(init.shape[0], dtype=torch.long)
    every = groups.to(init.device)  # the group of every chain, and of this rank's
    groups = every[mine.start:mine.stop]
    unit = torch.ones((int(every.max()) + 1, d), dtype=init.dtype, device=init.device)
    metric = _shared(unit, groups, dense)
    metric_all = _shared(unit, every, dense) if world.distributed else metric
    q = init[mine.start:mine.stop]
    lp, g = initial_density(potential, q, "chees")
    if settings.laplace:
        # one group: its distinct starts (one per superchain); several: every chain, as
        # the log density of a row is that of its group's posterior
        one = int(every.max()) == 0
        rows, index = torch.unique(init, dim=0, return_inverse=True) if one else \
            (init, torch.arange(len(every), device=init.device))
        found = laplace_metric(log_prob, potential, rows,
                               torch.zeros(len(rows), dtype=torch.long) if one else every,
                               dense, separately=one)
        if found is not None:
            moved, inverses = found
            identity = metric.inverse[0]
            each = torch.stack([identity if m is None else m for m in inverses])
            metric, metric_all = _shared(each, groups, dense), _shared(each, every, dense)
            q = moved[index][mine.start:mine.stop]
            lp, g = potential(q)
    n_groups = int(every.max()) + 1
    step = _initial_step(potential, metric, q, lp, g,
                         torch.full((n_groups,), settings.init_step_size, dtype=init.dtype,
                                    device=init.device), streams, groups, pool, every)
    adapt = _Adaptation(step, settings.adapt_delta, settings.max_leapfrog, every)
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
        steps = torch.ceil(jitter * length / step).clamp(1, settings.max_leapfrog).long()
        p = metric.draw_momentum(streams)
        q1, lp1, g1, p1, worst, h0 = _trajectory(potential, metric, q, lp, g, p,
                                                 step[groups], steps[groups])
        divergent = worst > MAX_DELTA_H
        log_accept = torch.nan_to_num(h0 - (-lp1 + metric.kinetic(p1)), nan=-math.inf)
        accept = torch.where(divergent, torch.zeros_like(lp), log_accept.clamp(max=0).exp())
        take = ~divergent & (torch.log(streams.uniform()) < log_accept)
        start = q
        q = torch.where(take[:, None], q1, q)
        lp = torch.where(take, lp1, lp)
        g = torch.where(take[:, None], g1, g)
        if warm:
            accept_all, divergent_all = pool(accept), pool(divergent)
            adapt.update(accept_all, divergent_all,
                         chees_gradient(pool(start), pool(q1), pool(p1), accept_all,
                                        divergent_all, metric_all, jitter, length, every))
            step, length = adapt.step, adapt.length
            if ends and ends[0] <= i + 1 <= ends[-1]:
                window.append(pool(q))
            if ends and i + 1 in ends[1:]:
                before = metric_all
                estimate = _pooled(window, dense, every)
                metric, metric_all = _shared(estimate, groups, dense), \
                    _shared(estimate, every, dense)
                window = []
                step = _initial_step(potential, metric, q, lp, g, step, streams, groups,
                                     pool, every)
                adapt.restart(step, torch.maximum(length * _rescale(before, metric_all),
                                                  step))
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
                       "step_size": step[groups], "n_steps": steps[groups],
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
                       metric=metric_all.inverse[0], warmup_draws=warm_draws,
                       warmup_stats=warm_stats)


# The mode is looked for with at most this many L-BFGS iterations, and its curvature is
# computed by central differences of the gradient (2 x dim points in one batched call)
# for at most this many coordinates.
LAPLACE_ITERATIONS, LAPLACE_MAX_DIM = 200, 200
NEWTON_ITERATIONS = 50


def laplace_metric(log_prob: Callable[[torch.Tensor], torch.Tensor],
                   potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   rows: torch.Tensor, owner: torch.Tensor, dense: bool,
                   separately: bool = True
                   ) -> tuple[torch.Tensor, list[torch.Tensor | None]] | None:
    """(`rows` [R, dim] moved to the modes L-BFGS finds from them (a row whose search
    fails stays), and for each group of rows (`owner`: the group of each row) the inverse
    metric of a Laplace approximation at its best mode, the inverse of the negative
    Hessian of the log density there, or None where the group has no usable mode (none
    within LAPLACE_ITERATIONS, as in a funnel whose density grows without bound towards
    its neck, or a curvature that is not positive definite)); None when the model is too
    large for a Hessian. `separately`: each row is searched from alone (log_prob takes
    any number of rows), else all rows at once (log_prob takes exactly these rows).

    Why: warmup pools chains, but pooled draws teach the metric only once the chains
    move, and under the identity metric a regression on uncentred predictors
    (kilpisjarvi: correlation -0.99999, sds 30 and 0.0075) allows steps of 1e-5 along a
    ridge 100 long. Stan's long per-chain warmup gets there by brute force; the curvature
    at the mode, as in Pathfinder (Zhang et al. 2022), gives the right shape at once, and
    the pooled windows then correct it for non-Gaussian posteriors. Each superchain
    starts from the mode its own start leads to, so that superchains that find different
    modes show it in nested R-hat."""
    r, d = rows.shape
    if d == 0 or d > LAPLACE_MAX_DIM:
        return None
    modes = torch.stack([_mode(log_prob, potential, x[None], LAPLACE_ITERATIONS)[0]
                         for x in rows]) if separately else _newton(potential, rows)
    lp, g = potential(modes)
    at_mode = torch.isfinite(lp) & \
        (g.abs().amax(-1) <= 1e-3 * modes.abs().amax(-1).clamp(min=1))
    if not bool(at_mode.any()):
        return rows, [None] * (int(owner.max()) + 1)
    hessian = _curvature(potential, modes)
    usable = at_mode & torch.isfinite(hessian).all(-1).all(-1)
    hessian = torch.where(usable[:, None, None], hessian, torch.eye(d, dtype=hessian.dtype,
                                                                     device=hessian.device))
    values, vectors = torch.linalg.eigh(hessian)
    usable &= values.min(-1).values > 1e-12 * values.abs().max(-1).values
    inverses: list[torch.Tensor | None] = []
    for k in range(int(owner.max()) + 1):
        score = torch.where(usable & (owner == k), lp, torch.full_like(lp, -math.inf))
        if not bool(torch.isfinite(score).any()):
            inverses.append(None)
            continue
        best = int(score.argmax())
        cov = (vectors[best] / values[best]) @ vectors[best].T
        inverses.append(cov if dense else torch.diagonal(cov).clone())
    return torch.where(at_mode[:, None], modes, rows), inverses


def _curvature(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
               x: torch.Tensor) -> torch.Tensor:
    """The negative Hessian of the log density at each row of x [R, dim], [R, dim, dim], by
    central differences of the gradient: two batched calls per coordinate."""
    h = 1e-5 * torch.clamp(x.abs(), min=1.0)
    columns = []
    for i in range(x.shape[-1]):
        step = torch.zeros_like(x)
        step[:, i] = h[:, i]
        _, up = potential(x + step)
        _, down = potential(x - step)
        columns.append(-(up - down) / (2 * h[:, i:i + 1]))
    hessian = torch.stack(columns, 1)
    return 0.5 * (hessian + hessian.transpose(1, 2))


def _newton(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
            rows: torch.Tensor) -> torch.Tensor:
    """Each row towards its own mode at once, by damped Newton steps in which every row
    has its own step length (so a row that runs off, as towards a funnel's neck, does not
    hold the others back, as one shared L-BFGS line search would). Curvature of the wrong
    sign is used by its magnitude (saddle-free Newton, Dauphin et al. 2014), so a step
    always goes uphill."""
    x = rows.clone()
    lp, g = potential(x)
    for _ in range(NEWTON_ITERATIONS):
        if bool((g.abs().amax(-1) <= 1e-8 * x.abs().amax(-1).clamp(min=1)).all()):
            break
        hessian = _curvature(potential, x)
        hessian = torch.where(torch.isfinite(hessian), hessian, torch.zeros_like(hessian))
        values, vectors = torch.linalg.eigh(hessian)
        size = values.abs().clamp(min=1e-8 * float(values.abs().max()) + 1e-300)
        direction = (vectors @ ((vectors.transpose(1, 2) @ g[..., None])[..., 0] /
                                size)[..., None])[..., 0]
        t = torch.ones_like(lp)
        moving = torch.isfinite(lp)
        for _ in range(30):  # backtracking, row by row
            trial = x + t[:, None] * direction
            lp_new, g_new = potential(trial)
            better = moving & torch.isfinite(lp_new) & \
                (lp_new >= lp + 1e-4 * t * (g * direction).sum(-1))
            x = torch.where(better[:, None], trial, x)
            lp = torch.where(better, lp_new, lp)
            g = torch.where(better[:, None], g_new, g)
            moving &= ~better
            if not bool(moving.any()):
                break
            t = torch.where(moving, t / 2, t)
    return x


def _mode(log_prob: Callable[[torch.Tensor], torch.Tensor],
          potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
          start: torch.Tensor, iterations: int) -> torch.Tensor:
    """L-BFGS from `start` [R, dim] towards a mode of the sum of the rows' log densities;
    each row where the search fails or ends where the density is not finite stays at
    its start."""
    x = start.detach().clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations,
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
    found = x.detach()
    lp, _ = potential(found)
    good = torch.isfinite(lp) & torch.isfinite(found).all(-1)
    return torch.where(good[:, None], found, start)


def _shared(inverse: torch.Tensor, groups: torch.Tensor, dense: bool) -> Metric:
    """Each group's inverse metric ([G, dim] or [G, dim, dim]) for each of its chains, in
    the batched form NUTS's Metric takes."""
    if dense and inverse.dim() == 2:
        inverse = torch.diag_embed(inverse)
    return Metric(inverse[groups], dense)


def _itself(x: torch.Tensor) -> torch.Tensor:
    """One process's chains are every chain."""
    return x


def _rescale(before: Metric, after: Metric) -> float:
    """How a trajectory length learnt under `before` reads under `after`: the length was
    set by the widest direction, and distances in whitened coordinates scale by
    sqrt(old variance / new variance); the direction that shrinks most bounds it."""
    old, new = (torch.diagonal(m.inverse, dim1=-2, dim2=-1) if m.dense else m.inverse
                for m in (before, after))
    return float((old / new).min().sqrt())


def _pooled(window: list[torch.Tensor], dense: bool, groups: torch.Tensor) -> torch.Tensor:
    """The regularised variance (or covariance) of each group's draws in the window,
    pooled over its chains ([G, dim] or [G, dim, dim]): chains whose starts differ widely
    still inflate it, which only widens the early metric."""
    draws = torch.stack(window, 1)  # [C, n, D]
    estimates = []
    for k in range(int(groups.max()) + 1):
        mine = draws[groups == k]
        moved = (mine != mine[:, :1]).any(-1).any(-1)
        if int(moved.sum()) >= 2:  # a chain stuck at its start teaches nothing but its place
            mine = mine[moved]
        estimates.append(_estimate(list(mine.reshape(-1, mine.shape[-1])[None].unbind(1)),
                                   dense)[0])
    return torch.stack(estimates)


def _initial_step(potential: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                  metric: Metric, q: torch.Tensor, lp: torch.Tensor, g: torch.Tensor,
                  step: torch.Tensor, streams: ChainStreams, groups: torch.Tensor,
                  pool: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  every: torch.Tensor | None = None) -> torch.Tensor:
    """Stan's heuristic on each group's pooled chains: double or halve its step until the
    harmonic mean of one leapfrog's acceptance crosses 0.8. On several ranks, `pool`
    gathers every chain's acceptance and `every` is every chain's group."""
    pool = pool or _itself
    every = groups if every is None else every
    step = step.clone()
    ones = torch.ones(len(q), dtype=torch.long, device=q.device)
    direction: torch.Tensor | None = None
    moving = torch.ones_like(step, dtype=torch.bool)
    for _ in range(50):
        p = metric.draw_momentum(streams)
        _, lp1, _, p1, _, h0 = _trajectory(potential, metric, q, lp, g, p, step[groups], ones)
        log_accept = torch.nan_to_num(h0 - (-lp1 + metric.kinetic(p1)), nan=-math.inf)
        inverse = pool(1.0 / log_accept.clamp(max=0).exp().clamp(min=1e-300))
        total = torch.zeros_like(step).index_add_(0, every, inverse)
        count = torch.zeros_like(step).index_add_(0, every, torch.ones_like(inverse))
        up = count / total > 0.8
        if direction is None:
            direction = up
        moving &= (up == direction) & (step > 1e-10) & (step < 1e7)
        if not bool(moving.any()):
            break
        step = torch.where(moving, torch.where(direction, step * 2, step / 2), step)
    return step
