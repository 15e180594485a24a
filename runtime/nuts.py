"""The No-U-Turn Sampler, all chains as one batched computation.

Multinomial NUTS with the generalised U-turn criterion (Betancourt 2017) and Stan's
extra checks across merged subtrees, biased progressive sampling between subtrees and
uniform progressive sampling within them, divergence detection (energy error > 1000)
and a maximum tree depth. Subtrees are built iteratively, not recursively: every chain
takes its leapfrog steps in lock-step so one call of the log density and its gradient
serves all chains; a chain whose trajectory has ended is masked, not waited for.

Within a subtree of 2^d steps, the U-turn checks of its aligned sub-subtrees need only
the momentum at the start of the latest aligned segment of each size and the running
momentum sum there ("checkpoints"), so memory is O(depth x dim) per chain.

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

import torch

from runtime.errors import ModelError
from runtime.model import numerical_failure
from runtime.streams import ChainStreams

Potential = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
MAX_DELTA_H = 1000.0


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
        bad = ~torch.isfinite(lp) | ~torch.isfinite(g).all(-1)
        if bad.any():
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


# ---- one transition -------------------------------------------------------------------


@dataclass
class _Edge:
    q: torch.Tensor
    p: torch.Tensor
    g: torch.Tensor


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = mask.reshape(mask.shape + (1,) * (a.dim() - mask.dim()))
    return torch.where(m, a, b)


def _no_uturn(metric: Metric, p_start: torch.Tensor, p_end: torch.Tensor,
              rho: torch.Tensor) -> torch.Tensor:
    """Generalised criterion: True where the trajectory has not turned back."""
    return ((metric.velocity(p_start) * rho).sum(-1) > 0) & \
        ((metric.velocity(p_end) * rho).sum(-1) > 0)


class _Transition:
    """State of one NUTS transition for all chains."""

    def __init__(self, potential: Potential, metric: Metric, step: torch.Tensor,
                 q: torch.Tensor, lp: torch.Tensor, g: torch.Tensor,
                 streams: ChainStreams, max_depth: int):
        self.potential, self.metric, self.step = potential, metric, step
        self.streams, self.max_depth = streams, max_depth
        c = q.shape[0]
        p = metric.draw_momentum(streams)
        self.h0 = -lp + metric.kinetic(p)
        self.left = _Edge(q, p, g)
        self.right = _Edge(q, p, g)
        self.sample_q, self.sample_lp, self.sample_g = q, lp, g
        self.log_w = -self.h0 + self.h0  # log weight of the initial point relative to h0: 0
        self.rho = p.clone()
        self.done = torch.zeros(c, dtype=torch.bool, device=q.device)
        self.divergent = torch.zeros_like(self.done)
        self.depth = torch.zeros(c, dtype=torch.long, device=q.device)
        self.n_leapfrog = torch.zeros(c, dtype=torch.long, device=q.device)
        self.sum_accept = torch.zeros_like(lp)
        self.energy_end = self.h0.clone()

    def _uniform(self, mask: torch.Tensor) -> torch.Tensor:
        """U(0, 1) for the chains in `mask`, each from its own stream; the others' streams
        do not move, so a chain's draws do not depend on the chains beside it."""
        return self.streams.uniform(mask).to(self.h0.device)

    def run(self) -> None:
        for depth in range(self.max_depth):
            if self.done.all():
                break
            forward = self._uniform(~self.done) < 0.5
            self._extend(depth, forward)

    def _leapfrog(self, e: _Edge, step: torch.Tensor) -> tuple[_Edge, torch.Tensor]:
        s = step[:, None]
        p_half = e.p + 0.5 * s * e.g
        q = e.q + s * self.metric.velocity(p_half)
        lp, g = self.potential(q)
        p = p_half + 0.5 * s * g
        return _Edge(q, p, g), lp

    def _extend(self, depth: int, forward: torch.Tensor) -> None:
        """Build a subtree of 2^depth steps in each chain's direction and merge it."""
        active = ~self.done
        start = _Edge(_where(forward, self.right.q, self.left.q),
                      _where(forward, self.right.p, self.left.p),
                      _where(forward, self.right.g, self.left.g))
        step = torch.where(forward, self.step, -self.step)
        sub = _Subtree(self, depth, start, active)
        e = start
        for n in range(2 ** depth):
            if not sub.going.any():
                break
            e, lp = self._leapfrog(e, step)
            sub.add(n, e, lp)
        ok = active & sub.valid
        new_edge = sub.last
        self.left = _Edge(*(_where(ok & ~forward, a, b) for a, b in
                            ((new_edge.q, self.left.q), (new_edge.p, self.left.p),
                             (new_edge.g, self.left.g))))
        self.right = _Edge(*(_where(ok & forward, a, b) for a, b in
                             ((new_edge.q, self.right.q), (new_edge.p, self.right.p),
                              (new_edge.g, self.right.g))))
        accept = ok & (torch.log(self._uniform(ok)) < sub.log_w - self.log_w)
        self.sample_q = _where(accept, sub.sample_q, self.sample_q)
        self.sample_lp = torch.where(accept, sub.sample_lp, self.sample_lp)
        self.sample_g = _where(accept, sub.sample_g, self.sample_g)
        self.log_w = torch.where(ok, torch.logaddexp(self.log_w, sub.log_w), self.log_w)
        rho_old = self.rho
        self.rho = _where(ok, self.rho + sub.rho, self.rho)
        self.depth = torch.where(active, self.depth + 1, self.depth)
        self.n_leapfrog += sub.n_leapfrog
        self.sum_accept += sub.sum_accept
        self.divergent |= sub.divergent & active
        merged_ok = _no_uturn(self.metric, self.left.p, self.right.p, self.rho)
        # Stan's extra checks across the old tree and the new subtree
        old_outer = _where(forward, self.left.p, self.right.p)
        extra1 = _no_uturn(self.metric, old_outer, sub.first.p, rho_old + sub.first.p)
        extra2 = _no_uturn(self.metric, start.p, new_edge.p, sub.rho + start.p)
        keep_going = ok & merged_ok & extra1 & extra2
        self.done |= active & ~keep_going


class _Subtree:
    """Accumulates one subtree's weight, sample, momentum sum and U-turn checks."""

    def __init__(self, t: _Transition, depth: int, start: _Edge, active: torch.Tensor):
        self.t, self.depth = t, depth
        self.going = active.clone()
        self.valid = active.clone()
        self.divergent = torch.zeros_like(active)
        self.log_w = torch.full_like(t.h0, -math.inf)
        self.rho = torch.zeros_like(start.p)
        self.sample_q, self.sample_lp, self.sample_g = start.q, t.sample_lp, start.g
        self.first = start
        self.last = start
        self.n_leapfrog = torch.zeros_like(t.n_leapfrog)
        self.sum_accept = torch.zeros_like(t.h0)
        self.ck_p: list[torch.Tensor | None] = [None] * (depth + 1)
        self.ck_rho: list[torch.Tensor | None] = [None] * (depth + 1)
        self.end_p: list[torch.Tensor | None] = [None] * (depth + 1)

    def add(self, n: int, e: _Edge, lp: torch.Tensor) -> None:
        t, going = self.t, self.going
        h = -lp + t.metric.kinetic(e.p)
        delta = h - t.h0
        delta = torch.where(torch.isnan(delta), torch.full_like(delta, math.inf), delta)
        divergent = going & (delta > MAX_DELTA_H)
        self.n_leapfrog += going.long()
        self.sum_accept += torch.where(going, torch.clamp(torch.exp(-delta), max=1.0),
                                       torch.zeros_like(delta))
        log_w_point = -delta
        new_log_w = torch.logaddexp(self.log_w, log_w_point)
        u = torch.log(t._uniform(going))
        take = going & ~divergent & (u < log_w_point - new_log_w)
        self.sample_q = _where(take, e.q, self.sample_q)
        self.sample_lp = torch.where(take, lp, self.sample_lp)
        self.sample_g = _where(take, e.g, self.sample_g)
        before = self.rho
        if bool(going.all()):  # the usual case: no masking needed
            self.log_w = new_log_w
            self.rho = self.rho + e.p
            if n == 0:
                self.first = e
            self.last = e
        else:
            self.log_w = torch.where(going, new_log_w, self.log_w)
            self.rho = _where(going, self.rho + e.p, self.rho)
            if n == 0:
                self.first = _Edge(*(_where(going, a, b) for a, b in
                                     ((e.q, self.first.q), (e.p, self.first.p),
                                      (e.g, self.first.g))))
            self.last = _Edge(*(_where(going, a, b) for a, b in
                                ((e.q, self.last.q), (e.p, self.last.p), (e.g, self.last.g))))
        # checkpoints at the start of aligned segments of each size 2^k
        for k in range(self.depth + 1):
            if n % (2 ** k) == 0:
                self.ck_p[k] = e.p
                self.ck_rho[k] = before
        ok = torch.ones_like(going)
        for k in range(1, self.depth + 1):
            if (n + 1) % (2 ** k) != 0:
                continue
            seg_rho = self.rho - self.ck_rho[k]  # type: ignore[operator]
            ok &= _no_uturn(t.metric, self.ck_p[k], e.p, seg_rho)  # type: ignore[arg-type]
            half = 2 ** (k - 1)
            mid_p = self.ck_p[k - 1]  # start of the right half
            left_rho = self.ck_rho[k - 1] - self.ck_rho[k]  # type: ignore[operator]
            ok &= _no_uturn(t.metric, self.ck_p[k], mid_p, left_rho + mid_p)  # type: ignore[arg-type]
            left_end = self.end_p[k - 1]
            if left_end is not None and half > 0:
                right_rho = self.rho - self.ck_rho[k - 1]  # type: ignore[operator]
                ok &= _no_uturn(t.metric, left_end, e.p, right_rho + left_end)
        # the end of the left half of the next check is this point when n+1 is a
        # multiple of 2^j but not 2^(j+1): remember it for level j
        j = 0
        while (n + 1) % (2 ** (j + 1)) == 0 and j < self.depth:
            j += 1
        self.end_p[j] = e.p
        stop = going & (divergent | ~ok)
        self.divergent |= divergent
        self.valid &= ~stop
        self.going &= ~stop


def transition(potential: Potential, metric: Metric, step: torch.Tensor, q: torch.Tensor,
               lp: torch.Tensor, g: torch.Tensor, streams: ChainStreams,
               max_depth: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                        dict[str, torch.Tensor]]:
    """One NUTS transition of every chain: (q, lp, grad, stats)."""
    t = _Transition(potential, metric, step, q, lp, g, streams, max_depth)
    t.run()
    n = t.n_leapfrog.clamp(min=1)
    stats = {
        "accept_stat": t.sum_accept / n,
        "n_leapfrog": t.n_leapfrog,
        "tree_depth": t.depth,
        "diverging": t.divergent,
        "energy": t.h0,
        "step_size": step,
    }
    return t.sample_q, t.sample_lp, t.sample_g, stats


# ---- adaptation -------------------------------------------------------------------------


class DualAveraging:
    """Nesterov dual averaging of log step size (Hoffman & Gelman 2014, Stan's constants)."""

    def __init__(self, step: torch.Tensor, delta: float):
        self.delta = delta
        self.restart(step)

    def restart(self, step: torch.Tensor) -> None:
        self.mu = torch.log(10 * step)
        self.counter = 0
        self.s_bar = torch.zeros_like(step)
        self.x_bar = torch.zeros_like(step)

    def update(self, accept: torch.Tensor) -> torch.Tensor:
        gamma, t0, kappa = 0.05, 10.0, 0.75
        self.counter += 1
        t = self.counter
        accept = torch.nan_to_num(accept, nan=0.0).clamp(0, 1)
        eta = 1.0 / (t + t0)
        self.s_bar = (1 - eta) * self.s_bar + eta * (self.delta - accept)
        x = self.mu - self.s_bar * math.sqrt(t) / gamma
        x_eta = t ** (-kappa)
        self.x_bar = x_eta * x + (1 - x_eta) * self.x_bar
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


def _estimate(samples: list[torch.Tensor], dense: bool) -> torch.Tensor:
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
    x = torch.stack(samples, 1)  # [C, n, D]
    n = x.shape[1]
    centred = x - x.mean(1, keepdim=True)
    if dense:
        cov = centred.transpose(1, 2) @ centred / max(n - 1, 1)
        scale = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=1e-8)
        return (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * torch.diag_embed(scale)
    var = (centred ** 2).sum(1) / max(n - 1, 1)
    return (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))


def _initial_step(potential: Potential, metric: Metric, q: torch.Tensor, lp: torch.Tensor,
                  g: torch.Tensor, step: torch.Tensor,
                  streams: ChainStreams) -> torch.Tensor:
    """Stan's heuristic: double or halve until one leapfrog's acceptance crosses 0.8."""
    step = step.clone()
    direction: torch.Tensor | None = None
    moving = torch.ones(q.shape[0], dtype=torch.bool, device=q.device)
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
           settings: NutsSettings, progress: Any = None) -> NutsResult:
    """Run warmup and sampling for all chains at once; init is [chains, dim]."""
    streams = ChainStreams(settings.seed, list(range(settings.first_chain,
                                                     settings.first_chain + init.shape[0])),
                           init.dtype, init.device)
    potential = _potential_of(log_prob)
    c, d = init.shape
    dense = settings.metric == "dense"
    ones = torch.ones((c, d), dtype=init.dtype, device=init.device)
    metric = Metric(torch.diag_embed(ones) if dense else ones, dense)
    q = init
    lp, g = initial_density(potential, q, "NUTS")
    step = torch.full((c,), settings.init_step_size, dtype=init.dtype, device=init.device)
    step = _initial_step(potential, metric, q, lp, g, step, streams)
    adapter = DualAveraging(step, settings.adapt_delta)
    init_buffer, _, ends = windows(settings.warmup)
    window: list[torch.Tensor] = []
    draws, lps = [], []
    stats: dict[str, list[torch.Tensor]] = {}
    warm_draws, warm_lps = [], []
    warm_stats: dict[str, list[torch.Tensor]] = {}
    total = settings.warmup + settings.draws
    divergences = torch.zeros(c, dtype=torch.long)
    for i in range(total):
        warm = i < settings.warmup
        q, lp, g, st = transition(potential, metric, step, q, lp, g, streams,
                                  settings.max_treedepth)
        if warm:
            if settings.save_warmup and i % settings.thin == 0:
                warm_draws.append(q)
                warm_lps.append(lp)
                for k, v in st.items():
                    warm_stats.setdefault(k, []).append(v)
            step = adapter.update(st["accept_stat"])
            if ends and init_buffer <= i < ends[-1]:
                window.append(q)
                if i + 1 in ends:
                    metric = Metric(_estimate(window, dense), dense)
                    window = []
                    step = _initial_step(potential, metric, q, lp, g, step, streams)
                    adapter.restart(step)
            if i + 1 == settings.warmup:
                step = adapter.final()
        else:
            if (i - settings.warmup) % settings.thin == 0:
                draws.append(q)
                lps.append(lp)
                for k, v in st.items():
                    stats.setdefault(k, []).append(v)
            divergences += st["diverging"].long().cpu()
        if progress is not None:
            progress(i + 1, total, warm, divergences)
    return NutsResult(
        draws=torch.stack(draws, 1) if draws else torch.empty(c, 0, d),
        log_density=torch.stack(lps, 1) if lps else torch.empty(c, 0),
        stats={k: torch.stack(v, 1) for k, v in stats.items()},
        step_size=step, metric=metric.inverse,
        warmup_draws=torch.stack(warm_draws, 1) if warm_draws else None,
        warmup_log_density=torch.stack(warm_lps, 1) if warm_lps else None,
        warmup_stats={k: torch.stack(v, 1) for k, v in warm_stats.items()}
        if warm_stats else None)
