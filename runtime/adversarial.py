"""Adversarial training of an implicit model (a GAN): `x[i] = G(z[i])` with G a net that
is not invertible has no likelihood, so G is trained against a critic net D declared in
the same file (`--method adversarial --critic D`).

Each step draws a minibatch of real rows and as many generated ones (the model's own
ancestral sampler at the current weights), then
- `ns` (default): the non-saturating GAN loss of Goodfellow et al. (2014): D minimises
  softplus(-D(real)) + softplus(D(fake)) + (gamma / 2) |grad D(real)|^2, G minimises
  softplus(-D(fake)). The last term is the R1 penalty (Mescheder, Geiger and Nowozin
  2018): it keeps the critic flat on the data, which makes the game converge locally
  instead of circling, the usual cause of a GAN that collapses onto one arc or mode.
  It is chosen over spectral normalisation because it needs no state beside the weights
  (a net here is a flat weight vector, not a module with power-iteration buffers).
- `wgan-gp`: Wasserstein loss with a gradient penalty (Gulrajani et al. 2017): D, 5 steps
  per G step, minimises D(fake) - D(real) + 10 (|grad D(x_mix)| - 1)^2, G minimises -D(fake).

Two time scales (Heusel et al. 2017): the critic learns at twice the generator's rate
under `ns` (wgan-gp has its 5 critic steps instead). Adam's betas are (0, 0.99) for `ns`
(StyleGAN2's: no momentum, which would carry a player past the equilibrium) and (0, 0.9)
for `wgan-gp` (its paper's). Samples are drawn with an exponential moving average of
the generator's weights (Yazici et al. 2019; runtime/ema.py), which averages out the
orbit the players still make around the equilibrium; the fit saves that average.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from runtime.distributed import World
from runtime.ema import DEFAULT_DECAY, Ema
from runtime.errors import ModelError

LOSSES = ("ns", "wgan-gp")
# gamma of the R1 penalty: 10 on data of unit scale, as for 2-D sets (and StyleGAN's)
R1_GAMMA = 10.0
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "ns": {"critic_steps": 1, "critic_lr_ratio": 2.0, "betas": (0.0, 0.99)},
    "wgan-gp": {"critic_steps": 5, "critic_lr_ratio": 1.0, "betas": (0.0, 0.9)}}


@dataclass(frozen=True)
class AdversarialSettings:
    critic: str
    steps: int = 2000
    batch: int = 256
    lr: float = 2e-4  # the generator's; the critic's is critic_lr_ratio times it
    loss: str = "ns"
    penalty: float = 10.0  # wgan-gp's gradient penalty
    seed: int = 1
    r1: float = R1_GAMMA  # ns: gamma of the R1 penalty on the critic (0: none)
    critic_lr_ratio: float | None = None  # None: the loss's (LOSS_DEFAULTS)
    betas: tuple[float, float] | None = None  # None: the loss's
    ema: float = DEFAULT_DECAY  # decay of the generator's weight average (0: none)

    def _default(self, name: str) -> Any:
        own = getattr(self, name, None)
        return own if own is not None else LOSS_DEFAULTS.get(self.loss, {}).get(name)

    @property
    def critic_steps(self) -> int:
        return int(LOSS_DEFAULTS.get(self.loss, {}).get("critic_steps", 1))

    @property
    def critic_lr(self) -> float:
        return self.lr * float(self._default("critic_lr_ratio") or 1.0)

    @property
    def adam_betas(self) -> tuple[float, float]:
        return tuple(self._default("betas") or (0.0, 0.99))  # type: ignore[return-value]


@dataclass
class AdversarialState:
    step: int = 0
    generator_losses: list[float] = field(default_factory=list)
    critic_losses: list[float] = field(default_factory=list)


class Adversarial:
    def __init__(self, model: Any, settings: AdversarialSettings):
        implicit = getattr(type(model), "implicit_names", ())
        if not implicit:
            raise ModelError("--method adversarial trains an implicit model (data defined "
                             "by '=' through a net, x[i] = G(z[i])); this model has none")
        if settings.loss not in LOSSES:
            raise ModelError(f"--gan-loss must be one of {', '.join(LOSSES)}")
        nets = tuple(getattr(model, "net_names", ()))
        if settings.critic not in nets:
            raise ModelError(f"--critic {settings.critic}: not a net of the model (its nets: "
                             f"{', '.join(nets) or 'none'})")
        if settings.batch < 1 or settings.steps < 1:
            raise ModelError("--batch and --iter must be at least 1")
        self.model, self.settings = model, settings
        self.name = implicit[0]
        self.size = next(s for s in model.data_specs if s.name == self.name).dims[0]
        self.real = model.data[self.name]
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        start = model.packer.unpack(model.initial_point(generator))
        self.params = {k: torch.nn.Parameter(start[k].detach().clone())
                       for k in model.param_names}
        out = model.call_net(model.data, settings.critic, self.params[settings.critic],
                             self.real[:2])
        if out.shape[-1] != 1:
            raise ModelError(f"the critic {settings.critic} must output one number per "
                             f"row; it outputs {out.shape[-1]}", model.locations.get(
                                 settings.critic))
        critic = [self.params[settings.critic]]
        gens = [v for k, v in self.params.items() if k != settings.critic]
        self.opt_d = torch.optim.Adam(critic, lr=settings.critic_lr, betas=settings.adam_betas)
        self.opt_g = torch.optim.Adam(gens, lr=settings.lr, betas=settings.adam_betas)
        self.generators = {k: v for k, v in self.params.items() if k != settings.critic}
        self.ema = Ema(self.generators, settings.ema) if settings.ema else None
        self.batch = min(settings.batch, int(self.real.shape[0]))
        self.state = AdversarialState()
        # data-parallel over its ranks, as SVI (runtime/distributed.py): each takes its
        # shard of the real rows and draws as many fake ones; losses are batch means, so
        # weighting each rank's by its share B_r / B makes their sum the global batch's
        self.world = World.current()
        self.world.check_batch(self.batch)

    def averaged(self) -> Any:
        """A block inside which the generator holds its moving average (when kept)."""
        return self.ema.swapped(self.generators) if self.ema is not None else \
            contextlib.nullcontext()

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        w = self.params[self.settings.critic]
        return self.model.call_net(self.model.data, self.settings.critic, w, x)[..., 0]

    def fake(self, n: int) -> torch.Tensor:
        """n rows drawn by the model's sampler at the current generator weights."""
        data = self.model.data.replaced({self.size: n})
        return self.model.sample_prior(data, (), self.params)[self.name]

    @torch.no_grad()
    def samples(self, n: int) -> torch.Tensor:
        """n rows drawn as the fit draws them: with the generator's moving average."""
        with self.averaged():
            return self.fake(n)

    def _real(self) -> tuple[torch.Tensor, float]:
        """This rank's rows of a global minibatch of real rows, and its share of it."""
        idx = torch.randperm(int(self.real.shape[0]))[:self.batch]
        local = self.world.shard(idx)
        return self.real.index_select(0, local.to(self.real.device)), self.world.share(idx)

    def _noise(self, k: int) -> Any:
        """This rank's random stream for block k of the step (runtime/distributed.py)."""
        key = self.state.step * (self.settings.critic_steps + 1) + k
        return self.world.noise(self.settings.seed, key, self.real.device)

    def _critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.settings.loss == "ns":
            real = real.detach().requires_grad_(bool(self.settings.r1))
            score = self.critic(real)
            loss = F.softplus(-score).mean() + F.softplus(self.critic(fake)).mean()
            return loss + 0.5 * self.settings.r1 * self.r1_penalty(real, score) \
                if self.settings.r1 else loss
        mix = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype,
                         device=real.device)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(between).sum(), between, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return self.critic(fake).mean() - self.critic(real).mean() + \
            self.settings.penalty * penalty

    @staticmethod
    def r1_penalty(real: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """E |grad_x D(x)|^2 over the real rows (score = D(real), real requiring grad),
        differentiable with respect to the critic's weights."""
        grad, = torch.autograd.grad(score.sum(), real, create_graph=True)
        return grad.flatten(1).pow(2).sum(1).mean()

    def step(self) -> float:
        for k in range(self.settings.critic_steps):
            self.opt_d.zero_grad()
            real, share = self._real()
            with self._noise(k):
                loss_d = self._critic_loss(real, self.fake(len(real)).detach()) * share
            loss_d.backward()
            loss_d = self.world.summed([self.params[self.settings.critic]], loss_d)
            self.opt_d.step()
        self.opt_g.zero_grad()
        with self._noise(self.settings.critic_steps):
            score = self.critic(self.fake(len(real)))
        loss_g = F.softplus(-score).mean() if self.settings.loss == "ns" else -score.mean()
        weighted = loss_g * share
        weighted.backward()
        loss_g = self.world.summed(list(self.generators.values()), weighted)
        g, d = float(loss_g.detach()), float(loss_d.detach())
        if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise ModelError(f"adversarial training became non-finite at step "
                             f"{self.state.step + 1} (generator loss {g}, critic loss {d}); "
                             "try a smaller --lr")
        self.opt_g.step()
        self.state.step += 1
        if self.ema is not None:
            self.ema.update(self.generators, self.state.step)
        self.state.generator_losses.append(g)
        self.state.critic_losses.append(d)
        return g

    def run(self, progress: Any = None) -> None:
        start = time.perf_counter()
        while self.state.step < self.settings.steps:
            loss = self.step()
            if progress is not None:
                rate = self.state.step / max(time.perf_counter() - start, 1e-9)
                progress(self.state.step, self.settings.steps, loss, rate * self.batch)

    def theta(self) -> torch.Tensor:
        """The fitted weights as the model's unconstrained vector, [1, 1, dim] (the
        generator's moving average when one is kept: what samples are drawn with)."""
        with self.averaged():
            return self._theta()

    def _theta(self) -> torch.Tensor:
        packed = self.model.packer.pack({k: v.detach()[None] for k, v in self.params.items()},
                                        1)
        return packed[None]


def adversarial_result(trainer: Adversarial) -> Any:
    """The trained generator as an InferenceData: the nets' weights (group `nets`) and the
    training's settings; there is no density, so no log-likelihood and lp is NaN."""
    from runtime.evaluate import inference_data  # noqa: PLC0415 - ArviZ is slow to import
    s = trainer.settings
    attrs = {"model": trainer.model.name, "method": f"adversarial-{s.loss}", "seed": s.seed,
             "steps": trainer.state.step, "critic": s.critic, "batch": trainer.batch,
             "lr": s.lr, "critic_lr": s.critic_lr, "r1": s.r1 if s.loss == "ns" else 0.0,
             "ema": s.ema}
    theta = trainer.theta()
    return inference_data(trainer.model, theta,
                          {"lp": torch.full(theta.shape[:2], float("nan"))}, attrs, "never")
