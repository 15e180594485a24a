"""Automatic differentiation variational inference (Kucukelbir et al. 2017), as Stan runs it.

A Gaussian on the unconstrained space, mean-field (diagonal) or full-rank (Cholesky
factor), fitted by maximising the reparameterised ELBO with a batch of particles per
step (one batched log-density call) and Adam. Convergence follows Stan: every
`eval_every` steps the relative ELBO change is computed; stop when its mean or median
over the recent history falls below `tol_rel_obj`. Draws come from the fitted Gaussian.

Two choices differ from Adam's defaults, both found by tests/test_exact.py and
tests/test_advi.py comparing ADVI with closed-form posteriors:
- The second-moment decay is 0.9, the weight 0.1 Stan's step-size sequence gives the
  squared gradient. With Adam's 0.999 the huge gradients of the first steps are remembered
  for ~1000 steps, so log-scale crawls as its gradient shrinks, and the relative-ELBO rule
  stopped at iteration 200 with a Normal mean's posterior sd 1.3x too wide (N = 100) or
  5x (N = 2000).
- The fitted Gaussian is the average of the iterates since the last ELBO evaluation
  (Polyak-Ruppert averaging). The last iterate of a constant-step optimiser jitters by
  about `lr` in unconstrained units, which is a large fraction of a narrow posterior's sd
  (mean errors up to 0.2 sd on one-dimensional conjugate posteriors).

A particle drawn where the log density is undefined or not finite (a Cholesky
factorisation that fails, the log of a negative: runtime/model.py) is dropped from that
step's ELBO and gradient, as Stan drops such draws from its ELBO estimate. Dropped
particles exert no pull, so nothing would keep the Gaussian from drifting into such a
region: a step that takes its mean to a point where the density is not finite is
rejected (the previous parameters, half the learning rate), as the optimisers backtrack.
Dropping is for transients (the first, wide Gaussians): when a large share of the
particles keeps being dropped, or none is finite for many steps in a row, the Gaussian
cannot fit the posterior and ADVI stops with the reason and its place in the model
(Stan's ADVI stops at the first dropped gradient). The final draws are redrawn where
they fall on such a point (the posterior has no mass there).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from runtime.errors import ModelError
from runtime.evaluate import MAX_CHUNK, chunk_draws, data_values


def point_mask(model: Any) -> torch.Tensor | None:
    """Which unconstrained coordinates are point parameters (`param`, a net's weights):
    rule 23 has ADVI integrate the latents and fit these as point masses, maximising the
    same ELBO (variational EM), so their draws are all equal. None when there are none."""
    names = set(getattr(model, "param_names", ()))
    if not names:
        return None
    mask = [torch.full((lat.size,), lat.name in names, dtype=torch.bool)
            for lat in model.latents]
    return torch.cat(mask)


@dataclass
class AdviSettings:
    family: str = "meanfield"  # meanfield | fullrank
    particles: int = 32
    max_iter: int = 10000
    lr: float = 0.05
    eval_every: int = 100
    tol_rel_obj: float = 0.01
    elbo_particles: int = 200
    draws: int = 1000
    seed: int = 1


@dataclass
class AdviResult:
    mean: torch.Tensor
    scale_tril: torch.Tensor
    draws: torch.Tensor  # [1, draws, dim]
    elbo: list[float]
    iterations: int
    converged: bool
    log_q: torch.Tensor | None = None  # [1, draws]: log q of each draw, up to a constant


class _Gaussian(torch.nn.Module):
    """A Gaussian over the free coordinates and a point mass (sd 0) on the point ones."""

    def __init__(self, init: torch.Tensor, family: str, point: torch.Tensor | None = None):
        super().__init__()
        d = init.shape[-1]
        self.family = family
        self.loc = torch.nn.Parameter(init.clone())
        free = torch.ones(d, dtype=init.dtype) if point is None else (~point).to(init.dtype)
        self.register_buffer("free", free.to(init.device))
        if family == "fullrank":
            self.raw_tril = torch.nn.Parameter(torch.zeros(d, d, dtype=init.dtype,
                                                           device=init.device))
            # the strictly lower mask, built once: torch.tril on every step cost ~10 ms
            # per call (thread-pool start-up on a busy machine), 20x the whole 2-D step
            self.register_buffer("strict", torch.ones(d, d, dtype=init.dtype,
                                                      device=init.device).tril(-1))
        else:
            self.log_scale = torch.nn.Parameter(torch.zeros(d, dtype=init.dtype,
                                                            device=init.device))

    def tril(self) -> torch.Tensor:
        if self.family == "fullrank":
            strict = self.raw_tril * self.strict
            full = strict + torch.diag_embed(torch.exp(torch.diagonal(self.raw_tril)))
            return full * self.free[:, None] * self.free[None, :]
        return torch.diag_embed(torch.exp(self.log_scale) * self.free)

    def entropy(self) -> torch.Tensor:
        d = float(self.free.sum())
        log_det = (torch.diagonal(self.raw_tril) * self.free).sum() \
            if self.family == "fullrank" else (self.log_scale * self.free).sum()
        return 0.5 * d * (1 + math.log(2 * math.pi)) + log_det

    def log_density_shape(self, theta: torch.Tensor) -> torch.Tensor:
        """log q(theta) up to a constant (the same for every draw), over the free
        coordinates: what importance ratios p / q need for Pareto k."""
        free = self.free.bool()
        d = (theta - self.loc)[..., free]
        if self.family == "fullrank":
            tril = self.tril()[free][:, free]
            z = torch.linalg.solve_triangular(tril, d.unsqueeze(-1), upper=False).squeeze(-1)
        else:
            z = d / torch.exp(self.log_scale[free])
        return -0.5 * (z * z).sum(-1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn((n, self.loc.shape[-1]), generator=generator,
                        dtype=self.loc.dtype).to(self.loc.device)
        if self.family == "fullrank":
            return self.loc + z @ self.tril().T
        return self.loc + z * torch.exp(self.log_scale) * self.free


class _Average:
    """The running mean of the variational parameters over a window of iterations."""

    def __init__(self, q: _Gaussian):
        self.sums = [torch.zeros_like(p) for p in q.parameters()]
        self.count = 0

    def add(self, q: _Gaussian) -> None:
        with torch.no_grad():
            for total, p in zip(self.sums, q.parameters(), strict=True):
                total += p
        self.count += 1

    def assign(self, q: _Gaussian) -> None:
        if self.count:
            with torch.no_grad():
                for total, p in zip(self.sums, q.parameters(), strict=True):
                    p.copy_(total / self.count)


# Steps in a row without one finite particle before ADVI gives up.
MAX_FAILED_STEPS = 20
# The largest share of particles dropped over an evaluation window (after the first).
MAX_DROPPED_SHARE = 0.2


def _finite_particles(lp: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
    ok = torch.isfinite(lp)
    return ok if g is None else ok & torch.isfinite(g).all(-1)


def _chunk(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """Particles evaluated at once: as many as keep the log density's arrays near
    runtime.evaluate's chunk size for a model's data (200 particles of 10^6 rows at once
    held 5 GB)."""
    model = getattr(log_prob, "__self__", None)
    return chunk_draws(1, data_values(model)) if model is not None else MAX_CHUNK


def _in_chunks(log_prob: Callable[[torch.Tensor], torch.Tensor],
               theta: torch.Tensor) -> torch.Tensor:
    """log_prob at particles theta [n, dim], a chunk at a time (each particle's value
    does not depend on the others in its chunk)."""
    step = _chunk(log_prob)
    if theta.shape[0] <= step:
        return log_prob(theta)
    return torch.cat([log_prob(part) for part in theta.split(step)])


def _elbo(q: _Gaussian, log_prob: Callable[[torch.Tensor], torch.Tensor], n: int,
          generator: torch.Generator) -> torch.Tensor:
    """The ELBO estimate over the particles with a finite log density (-inf: none)."""
    theta = q.sample(n, generator)
    lp = _in_chunks(log_prob, theta)
    ok = _finite_particles(lp)
    if not bool(ok.any()):
        return torch.full_like(q.entropy(), -math.inf)
    return lp[ok].mean() + q.entropy()


class _Step:
    """One step's particles: the surrogate whose gradient is the reparameterised ELBO
    gradient over the finite particles (None when there is none), how many particles were
    dropped and one of them, and whether the density is finite at q's mean."""

    def __init__(self, surrogate: torch.Tensor | None, dropped: int,
                 bad: torch.Tensor | None, centre_ok: bool):
        self.surrogate, self.dropped, self.bad, self.centre_ok = \
            surrogate, dropped, bad, centre_ok


def _surrogate(q: _Gaussian, log_prob: Callable[[torch.Tensor], torch.Tensor], n: int,
               generator: torch.Generator) -> _Step:
    """The particles' step (the density at q's mean is evaluated in the same call)."""
    theta = q.sample(n, generator)
    x = torch.cat([theta.detach(), q.loc.detach()[None]])
    lps, grads = [], []
    step = _chunk(log_prob)
    for part in x.split(step) if x.shape[0] > step else (x,):
        part = part.detach().requires_grad_(True)
        with torch.enable_grad():  # a chunk's graph is freed before the next is built
            lp_part = log_prob(part)
            g_part = torch.autograd.grad(lp_part.sum(), part, allow_unused=True)[0] \
                if lp_part.requires_grad else None
        lps.append(lp_part.detach())
        grads.append(g_part if g_part is not None else torch.zeros_like(part))
    lp, g = torch.cat(lps), torch.cat(grads)
    ok = _finite_particles(lp.detach(), g)
    centre_ok = bool(ok[-1])
    ok, g = ok[:-1], g[:-1]
    k = int(ok.sum())
    bad = x.detach()[:-1][~ok][:1] if k < n else None
    if k == 0:
        return _Step(None, n, bad, centre_ok)
    g = torch.where(ok[:, None], g, torch.zeros_like(g))
    return _Step((theta * g).sum() / k + q.entropy(), n - k, bad, centre_ok)


def _reject_step(q: _Gaussian, opt: torch.optim.Optimizer,
                 previous: list[torch.Tensor]) -> None:
    """Back to the parameters before the last step, with half the learning rate."""
    with torch.no_grad():
        for p, old in zip(q.parameters(), previous, strict=True):
            p.copy_(old)
    for group in opt.param_groups:
        group["lr"] = group["lr"] / 2


def _why(log_prob: Callable[[torch.Tensor], torch.Tensor], bad: torch.Tensor | None) -> str:
    """What is not finite at the particle `bad`, when log_prob is a model's."""
    model = getattr(log_prob, "__self__", None)
    if model is None or bad is None or not hasattr(model, "accumulate"):
        return ""
    from runtime.accumulate import Mode  # noqa: PLC0415
    from runtime.optimize import bad_terms  # noqa: PLC0415
    return f" (at one of them: {bad_terms(model, bad, Mode(jacobian=True, priors=True))})"


def _feasible_draws(q: _Gaussian, log_prob: Callable[[torch.Tensor], torch.Tensor], n: int,
                    generator: torch.Generator, tries: int = 100) -> torch.Tensor:
    """n draws from q, each redrawn while the log density is not finite there."""
    draws = q.sample(n, generator)
    for _ in range(tries):
        ok = _finite_particles(_in_chunks(log_prob, draws))
        if bool(ok.all()):
            return draws
        bad = ~ok
        draws[bad] = q.sample(int(bad.sum()), generator)
    raise ModelError("ADVI: the fitted Gaussian puts almost all its mass where the log "
                     "density is not finite")


def fit(log_prob: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor,
        settings: AdviSettings, point: torch.Tensor | None = None) -> AdviResult:
    """`point`: a mask of the coordinates fitted as point masses (see point_mask)."""
    generator = torch.Generator().manual_seed(settings.seed)
    q = _Gaussian(init, settings.family, point)
    opt = torch.optim.Adam(q.parameters(), lr=settings.lr, betas=(0.9, 0.9))
    history: list[float] = []
    rel: list[float] = []
    converged = False
    iteration = 0
    window = _Average(q)
    failed_steps = 0  # in a row
    dropped = False  # whether any particle was dropped
    window_dropped = window_drawn = 0  # particles dropped and drawn since the last evaluation
    bad: torch.Tensor | None = None  # the latest particle dropped
    previous: list[torch.Tensor] | None = None  # the parameters before the last step
    for iteration in range(1, settings.max_iter + 1):
        opt.zero_grad()
        step = _surrogate(q, log_prob, settings.particles, generator)
        surrogate = step.surrogate
        dropped = dropped or step.dropped > 0
        window_dropped += step.dropped
        window_drawn += settings.particles
        bad = step.bad if step.bad is not None else bad
        if not step.centre_ok and previous is not None:  # the last step left the support
            _reject_step(q, opt, previous)
            previous = None
            continue
        if surrogate is None:
            failed_steps += 1
            if not all(bool(torch.isfinite(p).all()) for p in q.parameters()):
                raise ModelError("the ELBO became non-finite during ADVI; try a smaller --lr")
            if failed_steps >= MAX_FAILED_STEPS:
                raise ModelError(f"ADVI: the log density is not finite at any particle drawn "
                                 f"in {failed_steps} steps in a row{_why(log_prob, bad)}; try a "
                                 "smaller --lr or other initial values")
            continue
        failed_steps = 0
        loss = -surrogate
        if not torch.isfinite(loss):
            raise ModelError("the ELBO became non-finite during ADVI; try a smaller --lr")
        loss.backward()
        previous = [p.detach().clone() for p in q.parameters()]
        opt.step()
        window.add(q)
        if iteration % settings.eval_every == 0:
            share = window_dropped / max(window_drawn, 1)
            if iteration > settings.eval_every and share > MAX_DROPPED_SHARE:
                raise ModelError(f"ADVI: {share:.0%} of the particles of the last "
                                 f"{settings.eval_every} steps fell where the log density is "
                                 f"not finite{_why(log_prob, bad)}: a Gaussian on the "
                                 "unconstrained space cannot fit a posterior against that "
                                 "boundary; use --method nuts")
            window_dropped = window_drawn = 0
            with torch.no_grad():
                value = float(_elbo(q, log_prob, settings.elbo_particles, generator))
            if not math.isfinite(value):  # no finite particle: nothing to compare
                continue
            if history:
                rel.append(abs((value - history[-1]) / value))
            history.append(value)
            recent = rel[-10:]
            if recent and (sum(recent) / len(recent) < settings.tol_rel_obj or
                           sorted(recent)[len(recent) // 2] < settings.tol_rel_obj):
                converged = True
                break
            if iteration < settings.max_iter:
                window = _Average(q)
    window.assign(q)
    with torch.no_grad():
        draws = (_feasible_draws(q, log_prob, settings.draws, generator) if dropped
                 else q.sample(settings.draws, generator))[None]
        return AdviResult(q.loc.detach().clone(), q.tril().detach().clone(), draws, history,
                          iteration, converged, q.log_density_shape(draws))
