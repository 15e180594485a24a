"""The No-U-Turn Sampler, all chains as one batched computation.

Multinomial NUTS with the generalised U-turn criterion (Betancourt 2017) and Stan's
extra checks across merged subtrees, biased progressive sampling between subtrees and
uniform progressive sampling within them, divergence detection (energy error > 1000)
and a maximum tree depth. One call of the log density and its gradient serves every
chain at every leapfrog step, and no chain waits for another: the trajectories, a step at
a time, are in runtime/nuts_tree.py; this module has the settings, the metric, the
density's wrapper, the adaptation and the run.

A point where the log density is undefined or not finite (NaN from the log of a negative,
a Cholesky factorisation that fails, an argument outside its support) is rejected as Stan
rejects it: its log density is -inf with a zero gradient, for that chain only, so the
trajectory through it ends as a divergence and the chain keeps its current sample.

Warmup follows Stan: dual-averaging step size adaptation (target acceptance delta) and
a diagonal or dense metric estimated in doubling windows (75 / 25... / 50 iterations),
regularised toward the identity, with step size adaptation restarted after each window.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from runtime.arrays import ArrayOps
from runtime.errors import ModelError
from runtime.model import numerical_failure
from runtime.nuts_tree import Trajectories
from runtime.streams import ChainStreams

Potential = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class NutsSettings:
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    adapt_delta: float = 0.8
    max_treedepth: int = 10
    metric: str = "diag"  # diag | dense
    init_step_size: float = 1.0
    seed: int = 1
    thin: int = 1  # keep every thin-th of the `draws` iterations after warmup
    save_warmup: bool = False  # keep the warmup iterations too (thinned alike)
    first_chain: int = 0  # the index of the first chain: its random stream's key


@dataclass
class NutsResult:
    draws: torch.Tensor  # [chains, draws, dim] unconstrained
    log_density: torch.Tensor  # [chains, draws]
    stats: dict[str, torch.Tensor]  # each [chains, draws]
    step_size: torch.Tensor  # [chains]
    metric: torch.Tensor  # [chains, dim] or [chains, dim, dim]
    # the warmup iterations, when NutsSettings.save_warmup: draws, log density, stats
    warmup_draws: torch.Tensor | None = None
    warmup_log_density: torch.Tensor | None = None
    warmup_stats: dict[str, torch.Tensor] | None = None


# ---- the metric -------------------------------------------------------------------------


@dataclass
class Metric:
    """The inverse mass matrix per chain: diagonal [C, D] or dense [C, D, D]."""

    inverse: torch.Tensor
    dense: bool = False
    _chol: torch.Tensor | None = field(default=None, repr=False)

    def velocity(self, p: torch.Tensor) -> torch.Tensor:
        """M^{-1} p."""
        if self.dense:
            return (self.inverse @ p.unsqueeze(-1)).squeeze(-1)
        return self.inverse * p

    def kinetic(self, p: torch.Tensor) -> torch.Tensor:
        return 0.5 * (p * self.velocity(p)).sum(-1)

    def draw_momentum(self, streams: ChainStreams,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """p ~ N(0, M), each chain's from its own stream (of the chains in `mask`)."""
        z = streams.normal(self.inverse.shape[-1], mask).to(self.inverse.device)
        if self.dense:
            if self._chol is None:
                mass = torch.linalg.inv(self.inverse)
                self._chol = torch.linalg.cholesky(mass)
            return (self._chol @ z.unsqueeze(-1)).squeeze(-1)
        return z / self.inverse.sqrt()


def _value_and_grad(log_prob: Callable[[torch.Tensor], torch.Tensor],
                    q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        x = q.detach().requires_grad_(True)
        lp = log_prob(x)
        (g,) = torch.autograd.grad(lp.sum(), x)
    return lp.detach(), g


def _each_chain(log_prob: Callable[[torch.Tensor], torch.Tensor],
                q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log density, gradient) chain by chain, after the batched call raised: a chain
    whose own call raises a numerical failure is at a rejected point (-inf)."""
    lps, gs = [], []
    for i in range(q.shape[0]):
        try:
            lp, g = _value_and_grad(log_prob, q[i:i + 1])
        except Exception as exc:
            if not numerical_failure(exc):
                raise
            lp = torch.full((1,), -math.inf, dtype=q.dtype, device=q.device)
            g = torch.zeros_like(q[i:i + 1])
        lps.append(lp.reshape(1))
        gs.append(g)
    return torch.cat(lps), torch.cat(gs)


def _potential_of(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Potential:
    """(log density, gradient) of every chain in one call; -inf and a zero gradient for
    the chains at a rejected point (a NaN or infinite value or gradient, or a numerical
    failure torch raises, such as a Cholesky factorisation that fails)."""

    def potential(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            lp, g = _value_and_grad(log_prob, q)
        except Exception as exc:
            if not numerical_failure(exc):
                raise
            lp, g = _each_chain(log_prob, q)
        if bool(torch.isfinite(lp + g.sum(-1)).all()):  # the usual case, in few operations
            return lp, g
        bad = ~torch.isfinite(lp) | ~torch.isfinite(g).all(-1)
        lp = torch.where(bad, torch.full_like(lp, -math.inf), lp)
        g = torch.where(bad[:, None], torch.zeros_like(g), g)
        return lp, g
    return potential


def initial_density(potential: Potential, q: torch.Tensor,
                    sampler: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log density, gradient) at the chains' starting points, which must be finite."""
    lp, g = potential(q)
    if not bool(torch.isfinite(lp).all()):
        chain = int(torch.nonzero(~torch.isfinite(lp))[0, 0]) + 1
        raise ModelError(f"{sampler}: the log density is not finite at the initial point of "
                         f"chain {chain}")
    return lp, g


# ---- adaptation -------------------------------------------------------------------------


class DualAveraging:
    """Nesterov dual averaging of log step size (Hoffman & Gelman 2014, Stan's constants),
    one per element of `step` (a chain in NUTS, a group of chains in chees); `mask` limits
    an update or a restart to some of them, each with its own iteration count."""

    def __init__(self, step: torch.Tensor, delta: float):
        self.delta = delta
        self.mu = torch.log(10 * step)
        self.counter = torch.zeros_like(step)
        self.s_bar = torch.zeros_like(step)
        self.x_bar = torch.zeros_like(step)

    def restart(self, step: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        m = torch.ones_like(step, dtype=torch.bool) if mask is None else mask
        self.mu = torch.where(m, torch.log(10 * step), self.mu)
        self.counter = torch.where(m, 0.0, self.counter)
        self.s_bar = torch.where(m, 0.0, self.s_bar)
        self.x_bar = torch.where(m, 0.0, self.x_bar)

    def update(self, accept: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The next step size of each element (of those in `mask`: the others' state does
        not move, and their value is not meaningful)."""
        gamma, t0, kappa = 0.05, 10.0, 0.75
        m = torch.ones_like(accept, dtype=torch.bool) if mask is None else mask
        counter = self.counter + 1
        t = counter.clamp(min=1)
        accept = torch.nan_to_num(accept, nan=0.0).clamp(0, 1)
        eta = 1.0 / (t + t0)
        s_bar = (1 - eta) * self.s_bar + eta * (self.delta - accept)
        x = self.mu - s_bar * torch.sqrt(t) / gamma
        x_eta = t ** (-kappa)
        x_bar = x_eta * x + (1 - x_eta) * self.x_bar
        self.counter = torch.where(m, counter, self.counter)
        self.s_bar = torch.where(m, s_bar, self.s_bar)
        self.x_bar = torch.where(m, x_bar, self.x_bar)
        return torch.exp(x)

    def final(self) -> torch.Tensor:
        return torch.exp(self.x_bar)


def windows(warmup: int) -> tuple[int, int, list[int]]:
    """Stan's schedule: initial fast buffer, slow windows (doubling) ending where the
    terminal fast buffer starts; returns (init_buffer, term_buffer, window ends)."""
    init, term, base = 75, 50, 25
    if warmup < 20:
        return warmup, 0, []
    if init + term + base > warmup:
        init, term = int(0.15 * warmup), int(0.1 * warmup)
        base = warmup - init - term
    ends = []
    start, size = init, base
    last = warmup - term
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        ends.append(end)
        start, size = end, size * 2
    return init, term, ends


def _estimate(samples: list[torch.Tensor] | torch.Tensor, dense: bool) -> torch.Tensor:
    """Regularised variance (or covariance) of warmup draws.

    The diagonal estimate is Stan's: shrunk towards 1e-3 on the unconstrained scale. The
    dense one is shrunk by the same weight towards 1e-3 times its own diagonal instead of
    towards 1e-3 * I: Stan's absolute target swamps a parameter whose posterior sd is
    below ~0.03 (a regression slope on uncentred years, sd 0.0075, correlated -0.99999
    with the intercept), turns the learnt correlation back into independence and leaves
    NUTS at maximal tree depth. Scaling by the diagonal keeps the regularisation
    invariant to the units of each coordinate; the floor keeps it positive definite
    when a chain has not moved in a window.
    """
    x = samples if isinstance(samples, torch.Tensor) else torch.stack(samples, 1)  # [C, n, D]
    n = x.shape[1]
    centred = x - x.mean(1, keepdim=True)
    if dense:
        cov = centred.transpose(1, 2) @ centred / max(n - 1, 1)
        scale = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=1e-8)
        return (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * torch.diag_embed(scale)
    var = (centred ** 2).sum(1) / max(n - 1, 1)
    return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def _initial_step(potential: Potential, metric: Metric, q: torch.Tensor, lp: torch.Tensor,
                  g: torch.Tensor, step: torch.Tensor, streams: ChainStreams,
                  chains: torch.Tensor | None = None) -> torch.Tensor:
    """Stan's heuristic: double or halve until one leapfrog's acceptance crosses 0.8 (for
    the chains in `chains`, all by default; the others keep their step and streams)."""
    step = step.clone()
    direction: torch.Tensor | None = None
    moving = torch.ones(q.shape[0], dtype=torch.bool, device=q.device) if chains is None \
        else chains.clone()
    for _ in range(50):
        p = metric.draw_momentum(streams, moving)
        h0 = -lp + metric.kinetic(p)
        s = step[:, None]
        p_half = p + 0.5 * s * g
        q1 = q + s * metric.velocity(p_half)
        lp1, g1 = potential(q1)
        p1 = p_half + 0.5 * s * g1
        delta = h0 - (-lp1 + metric.kinetic(p1))
        delta = torch.nan_to_num(delta, nan=-math.inf)
        up = delta > math.log(0.8)
        if direction is None:
            direction = up
        moving = moving & (up == direction)  # a chain that has stopped stays stopped
        if not moving.any():
            break
        step = torch.where(moving, torch.where(direction, step * 2, step / 2), step)
        if (step > 1e7).any() or (step < 1e-10).any():
            break
    return step


def sample(log_prob: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
           settings: NutsSettings, progress: Any = None, *,
           arrays: ArrayOps | None = None) -> NutsResult:
    """Run warmup and sampling for all chains at once; init is [chains, dim].

    Each chain adapts its own step size and metric on Stan's schedule, at its own pace,
    so no chain waits for another at any point of the run (runtime/nuts_tree.py).
    `arrays`: the array library of the per-step bookkeeping (numpy on a CPU, torch
    elsewhere, by default); the draws do not depend on it."""
    streams = ChainStreams(settings.seed, list(range(settings.first_chain,
                                                     settings.first_chain + init.shape[0])),
                           init.dtype, init.device)
    potential = _potential_of(log_prob)
    c, d = init.shape
    dense = settings.metric == "dense"
    ones = torch.ones((c, d), dtype=init.dtype, device=init.device)
    metric = Metric(torch.diag_embed(ones) if dense else ones, dense)
    lp, g = initial_density(potential, init, "NUTS")
    step = torch.full((c,), settings.init_step_size, dtype=init.dtype, device=init.device)
    step = _initial_step(potential, metric, init, lp, g, step, streams)
    adapter = DualAveraging(step, settings.adapt_delta)
    ops = arrays or ArrayOps(init.dtype, init.device)

    def potential_of_arrays(q: Any) -> tuple[Any, Any]:
        lp, g = potential(ops.tensor(q))
        return ops.array(lp), ops.array(g)

    t = Trajectories(ops, potential_of_arrays, metric, ops.array(step), ops.array(init),
                     ops.array(lp), ops.array(g), streams, settings.max_treedepth)
    run = _Run(ops, settings, c, d)
    t.begin(run.live)
    done_before = 0
    with np.errstate(all="ignore"):  # log(0), exp(-inf), logaddexp(-inf, -inf) are meant
        while bool(run.live.any()):
            ended = t.advance(run.live)
            if ended is None:
                continue
            it = run.iteration
            stats = t.stats()
            run.record(ended, it, t.sample[:, 0], t.sample_lp, stats)
            warm = ended & (it < settings.warmup)
            if bool(warm.any()):
                _adapt(t, run, adapter, potential, warm, it, stats["accept_stat"],
                       dense)
            run.iteration = it + ended
            run.live = run.iteration < run.total
            over = ended & ~run.live
            if bool(over.any()):
                t.freeze(over)
            again = ended & run.live
            if bool(again.any()):
                t.begin(again)
            if progress is not None:
                done = int(run.iteration.min())
                if done > done_before:
                    done_before = done
                    progress(done, run.total, done <= settings.warmup,
                             ops.tensor(run.divergences).cpu())
    return run.result(ops.tensor(t.step), t.metric.inverse)


def _adapt(t: Trajectories, run: _Run, adapter: DualAveraging, potential: Potential,
           warm: Any, it: Any, accept: Any, dense: bool) -> None:
    """Stan's warmup, for the chains in `warm` that just ended warmup iteration `it`:
    dual averaging of the step size, the metric from each slow window's draws (then the
    step size found afresh), and the averaged step size at the end of warmup."""
    ops = t.ops
    chains = ops.tensor(warm)
    step = ops.tensor(t.step)
    step = torch.where(chains, adapter.update(ops.tensor(accept), chains), step)
    wit = it.clip(0, run.warmup - 1)  # numpy and torch alike
    in_window = warm & (it >= run.first_window) & (it < run.last_window)
    if bool(in_window.any()):
        rows = ops.nonzero(in_window)
        at = (it - run.window_start[wit])
        run.window[rows, at[rows]] = t.sample[rows, 0]
        closing = in_window & run.closes[wit + 1]
        if bool(closing.any()):
            inverse = t.metric.inverse.clone()
            sizes = at + 1
            for size in sorted({int(s) for s in sizes[ops.nonzero(closing)]}):
                rows = ops.nonzero(closing & (sizes == size))
                inverse[ops.tensor(rows)] = _estimate(ops.tensor(run.window[rows, :size]),
                                                      dense)
            t.set_metric(Metric(inverse, dense))
            closing_t = ops.tensor(closing)
            found = _initial_step(potential, t.metric, ops.tensor(t.sample[:, 0]),
                                  ops.tensor(t.sample_lp), ops.tensor(t.sample[:, 2]), step,
                                  t.streams, closing_t)
            step = torch.where(closing_t, found, step)
            adapter.restart(step, closing_t)
    last = warm & (it + 1 == run.warmup)
    if bool(last.any()):
        step = torch.where(ops.tensor(last), adapter.final(), step)
    t.step = ops.array(step)


class _Run:
    """Where each chain is in the run, and what it has recorded: draws and statistics
    written at each chain's own iteration, the warmup's window draws, Stan's schedule."""

    def __init__(self, ops: ArrayOps, settings: NutsSettings, c: int, d: int):
        self.ops = ops
        self.warmup, self.thin = settings.warmup, settings.thin
        self.total = settings.warmup + settings.draws
        self.iteration = ops.full((c,), 0, "int")
        self.live = self.iteration < self.total
        self.divergences = ops.full((c,), 0, "int")
        init_buffer, _, ends = windows(settings.warmup)
        self.first_window = init_buffer
        self.last_window = ends[-1] if ends else 0
        # per warmup iteration: where its window started; whether a window closes after it
        start = torch.zeros(max(settings.warmup, 1), dtype=torch.long)
        closes = torch.zeros(settings.warmup + 2, dtype=torch.bool)
        longest, begin = 0, init_buffer
        for end in ends:
            start[begin:end] = begin
            closes[end] = True
            longest, begin = max(longest, end - begin), end
        self.window_start = ops.array(start.to(ops.device))
        self.closes = ops.array(closes.to(ops.device))
        self.window = ops.full((c, longest, d), 0.0)
        kept = -(-settings.draws // self.thin)
        self.draws = ops.full((c, kept, d), 0.0)
        self.log_density = ops.full((c, kept), 0.0)
        self.stats: dict[str, Any] = {}
        kept_warm = -(-settings.warmup // self.thin) if settings.save_warmup else 0
        self.warm_draws = ops.full((c, kept_warm, d), 0.0)
        self.warm_log_density = ops.full((c, kept_warm), 0.0)
        self.warm_stats: dict[str, Any] = {}

    def record(self, ended: Any, it: Any, q: Any, lp: Any, stats: dict[str, Any]) -> None:
        """Keep the draws of the chains that ended iteration `it` (every thin-th)."""
        sampling = ended & (it >= self.warmup)
        self.divergences = self.divergences + (sampling & stats["diverging"])
        offset = self.ops.where(sampling, it - self.warmup, it)
        kept = ended & (offset % self.thin == 0)
        self._write(kept & sampling, offset // self.thin, q, lp, stats,
                    self.draws, self.log_density, self.stats)
        if self.warm_draws.shape[1]:
            self._write(kept & ~sampling, offset // self.thin, q, lp, stats,
                        self.warm_draws, self.warm_log_density, self.warm_stats)

    def _write(self, mask: Any, slot: Any, q: Any, lp: Any, stats: dict[str, Any],
               draws: Any, lps: Any, into: dict[str, Any]) -> None:
        if not bool(mask.any()):
            return
        ops = self.ops
        rows = ops.nonzero(mask)
        at = slot[rows]
        draws[rows, at] = q[rows]
        lps[rows, at] = lp[rows]
        for k, v in stats.items():
            if k not in into:
                into[k] = ops.xp.zeros_like(lps, dtype=v.dtype)
            into[k][rows, at] = v[rows]

    def result(self, step: torch.Tensor, inverse: torch.Tensor) -> NutsResult:
        tensor = self.ops.tensor
        warm = bool(self.warm_stats)
        return NutsResult(
            draws=tensor(self.draws), log_density=tensor(self.log_density),
            stats={k: tensor(v) for k, v in self.stats.items()},
            step_size=step, metric=inverse,
            warmup_draws=tensor(self.warm_draws) if warm else None,
            warmup_log_density=tensor(self.warm_log_density) if warm else None,
            warmup_stats={k: tensor(v) for k, v in self.warm_stats.items()} if warm else None)
