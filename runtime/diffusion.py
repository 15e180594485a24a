"""Diffusion models: `x[i] ~ Diffusion(eps, steps=T, schedule="linear")` (Ho et al. 2020).

A fixed forward chain adds Gaussian noise to a data vector x_0 over T steps,
    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s<=t} (1 - beta_s),
and a net learns to undo it by predicting the noise: eps(x_t, t / T) ~ the epsilon in
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) epsilon. The net is an MLP whose input is the
data vector followed by the time features of t / T: one column (t / T itself) or 2k
columns (sin and cos at k geometric frequencies, the transformer's time embedding);
its output has the data's width.

Training maximises the negative simplified loss -||epsilon - eps(x_t, t / T)||^2 at one
random (t, epsilon) per data point: a Monte Carlo objective, not a log density, so only
stochastic optimisation (`--method svi`) fits it. Sampling runs the reverse chain:
ancestral (DDPM, all T steps) by default, or DDIM with fewer steps inside `sampler(...)`.

Why a distribution object: generated code scores it with `.log_prob(x)` and draws it
with `rt.draw`, exactly as it does every other distribution.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import torch

from runtime.nets import mlp

SCHEDULES = ("linear", "cosine")


@lru_cache(maxsize=16)
def betas(schedule: str, steps: int) -> torch.Tensor:
    """beta_1..beta_T (float64). "linear": DDPM's 1e-4..0.02 over 1000 steps, rescaled by
    1000 / T so that fewer steps still end in noise (Nichol & Dhariwal's form); "cosine":
    abar_t = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2, s = 0.008."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown noise schedule '{schedule}' (use linear or cosine)")
    if schedule == "linear":
        scale = 1000.0 / steps
        b = torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    else:
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        b = 1 - abar[1:] / abar[:-1]
    return b.clamp(max=0.999)


@dataclass(frozen=True)
class Chain:
    """The forward chain's constants as tensors of x's dtype and device, indexed by t - 1."""

    beta: torch.Tensor
    abar: torch.Tensor

    @staticmethod
    def of(schedule: str, steps: int, like: torch.Tensor) -> Chain:
        b = betas(schedule, steps)
        return Chain(b.to(like), torch.cumprod(1 - b, 0).to(like))

    def abar_step(self, t: int) -> torch.Tensor:
        """abar_t at one step t in 0..T."""
        return self.abar[t - 1] if t > 0 else self.abar.new_ones(())

    def abar_at(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t for integer steps t in 0..T (abar_0 = 1: no noise)."""
        padded = torch.cat([self.abar.new_ones(1), self.abar])
        return padded[t]


def forward_step(x: torch.Tensor, t: int, noise: torch.Tensor, chain: Chain) -> torch.Tensor:
    """One step of the forward chain, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
    beta_t I): the process that q_sample's closed form composes t times."""
    beta = chain.beta[t - 1]
    return (1 - beta).sqrt() * x + beta.sqrt() * noise


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, chain: Chain) -> torch.Tensor:
    """x_t given x_0 in closed form: sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (t: 1..T,
    one per row of x0)."""
    a = chain.abar_at(t).unsqueeze(-1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def time_features(tau: torch.Tensor, width: int) -> torch.Tensor:
    """The net's time input for tau = t / T in [0, 1]: tau itself (width 1) or sin and cos
    of 1000 tau at width / 2 frequencies from 1 down to 1/10000."""
    if width == 1:
        return tau.unsqueeze(-1)
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=tau.dtype,
                                                       device=tau.device) / half)
    angle = 1000.0 * tau.unsqueeze(-1) * freqs
    return torch.cat([angle.sin(), angle.cos()], -1)


def check_widths(sizes: tuple[int, ...], dim: int) -> int:
    """The number of time-feature columns of a denoiser MLP over data of width dim."""
    extra = int(sizes[0]) - dim
    if int(sizes[-1]) != dim or extra < 1 or (extra > 1 and extra % 2):
        raise ValueError(f"the diffusion net must map {dim} data values and its time "
                         f"features (1 column, or an even number) to {dim} values; it is "
                         f"MLP({', '.join(str(s) for s in sizes)})")
    return extra


class Diffusion:
    """The distribution of one data vector (event shape [D]) under a trained denoiser.

    w: the net's weights [batch..., P]; sizes, act: the MLP's; steps, schedule: the chain;
    clip: the data's declared bounds (lower, upper), which sampling keeps x_0 inside.
    """

    def __init__(self, w: torch.Tensor, sizes: tuple[int, ...], act: str, steps: int,
                 schedule: str, clip: tuple[float | None, float | None] | None = None,
                 batch_shape: tuple[int, ...] = ()):
        self.w, self.sizes, self.act = w, tuple(int(s) for s in sizes), act
        self.steps, self.schedule = int(steps), schedule
        self.clip = None if clip is None or tuple(clip) == (None, None) else tuple(clip)
        self.event_shape = torch.Size((self.sizes[-1],))
        self.batch_shape = torch.Size(batch_shape)
        self.features = check_widths(self.sizes, self.sizes[-1])

    def expand(self, batch_shape: tuple[int, ...]) -> Diffusion:
        return Diffusion(self.w, self.sizes, self.act, self.steps, self.schedule, self.clip,
                         tuple(batch_shape))

    def eps(self, x: torch.Tensor, t: torch.Tensor, lead: int) -> torch.Tensor:
        """The predicted noise at x_t [batch..., D] and steps t [batch...], whose first
        `lead` dims are the weights' batch dims (0: x is data, without them)."""
        tau = (t.to(x.dtype) / self.steps).expand(x.shape[:-1])
        inputs = torch.cat([x, time_features(tau, self.features)], -1)
        return mlp(self.w, self.sizes, self.act, inputs, x.dim() - 1 - lead)

    def log_prob(self, x0: torch.Tensor) -> torch.Tensor:
        """The negative simplified loss at one random (t, epsilon) per vector:
        -||epsilon - eps(x_t, t/T)||^2, batch [weights' batch..., x's batch...]."""
        x0 = torch.as_tensor(x0, dtype=self.w.dtype, device=self.w.device)
        t = torch.randint(1, self.steps + 1, x0.shape[:-1], device=x0.device)
        noise = torch.randn_like(x0)
        chain = Chain.of(self.schedule, self.steps, x0)
        predicted = self.eps(q_sample(x0, t, noise, chain), t, 0)
        return -((noise - predicted) ** 2).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        shape = tuple(sample_shape) + tuple(self.batch_shape) + tuple(self.event_shape)
        x = torch.randn(shape, dtype=self.w.dtype, device=self.w.device)
        chain = Chain.of(self.schedule, self.steps, x)
        w_batch = tuple(self.w.shape[:-1])
        lead = len(w_batch) if tuple(shape[:len(w_batch)]) == w_batch else 0
        settings = _SAMPLER[-1]
        if settings.ddim is None:
            return _ancestral(self, x, chain, lead)
        return _ddim(self, x, chain, lead, settings.ddim, settings.eta)


def _x0(d: Diffusion, x: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The data the net's noise points to, x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
    kept inside the data's declared bounds (as DDPM's samplers clip images to [-1, 1])."""
    x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
    return x0 if d.clip is None else x0.clamp(*d.clip)


def _ancestral(d: Diffusion, x: torch.Tensor, chain: Chain, lead: int) -> torch.Tensor:
    """DDPM: x_{t-1} ~ q(x_{t-1} | x_t, x_0 = the predicted x_0), a Gaussian with mean
    sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(1 - beta_t) (1 - abar_{t-1}) /
    (1 - abar_t) x_t and variance beta_t (1 - abar_{t-1}) / (1 - abar_t) (zero at t = 1).
    Unclipped, the mean is (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(1 - beta_t)."""
    for t in range(d.steps, 0, -1):
        beta, abar = chain.beta[t - 1], chain.abar[t - 1]
        prev = chain.abar_step(t - 1)
        eps = d.eps(x, x.new_full(x.shape[:-1], t), lead)
        x0 = _x0(d, x, eps, abar)
        x = (prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - prev) * x) / (1 - abar)
        if t > 1:
            x = x + (beta * (1 - prev) / (1 - abar)).sqrt() * torch.randn_like(x)
    return x


def ddim_steps(steps: int, count: int) -> list[int]:
    """The steps DDIM visits, from the last down to 1: every (T // count)-th step counted
    from 1 (all of them when count >= T). Starting below T when the stride is above 1
    keeps the first update away from abar_T, which the cosine schedule sends to ~0 and
    whose inverse square root would amplify the net's error there."""
    stride = max(1, steps // max(1, count))
    return list(range(1, steps + 1, stride))[:count][::-1]


def _ddim(d: Diffusion, x: torch.Tensor, chain: Chain, lead: int, count: int,
          eta: float) -> torch.Tensor:
    """DDIM (Song et al. 2021) over a subsequence of steps: predict x_0, then move to the
    previous kept step along the predicted noise; eta = 0 is deterministic given x_T, and
    eta = 1 over all the steps is DDPM."""
    ts = ddim_steps(d.steps, count)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else 0
        a_t = chain.abar[t - 1]
        a_prev = chain.abar_step(prev)
        eps = d.eps(x, x.new_full(x.shape[:-1], t), lead)
        x0 = _x0(d, x, eps, a_t)
        if d.clip is not None:  # the noise consistent with the clipped x_0
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0 and prev > 0:
            x = x + sigma * torch.randn_like(x)
    return x


@dataclass(frozen=True)
class SamplerSettings:
    ddim: int | None = None  # None: ancestral sampling over all steps
    eta: float = 0.0


_SAMPLER: list[SamplerSettings] = [SamplerSettings()]


@contextlib.contextmanager
def sampler(ddim: int | None = None, eta: float = 0.0) -> Iterator[None]:
    """Draws of Diffusion inside this block use DDIM with `ddim` steps (None: DDPM)."""
    _SAMPLER.append(SamplerSettings(ddim, eta))
    try:
        yield
    finally:
        _SAMPLER.pop()
