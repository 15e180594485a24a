"""Adversarial training of an implicit model (a GAN): `x[i] = G(z[i])` with G a net that
is not invertible has no likelihood, so G is trained against a critic net D declared in
the same file (`--method adversarial --critic D`).

Each step draws a minibatch of real rows and as many generated ones (the model's own
ancestral sampler at the current weights), then
- `ns` (default): the non-saturating GAN loss of Goodfellow et al. (2014): D minimises
  softplus(-D(real)) + softplus(D(fake)), G minimises softplus(-D(fake));
- `wgan-gp`: Wasserstein loss with a gradient penalty (Gulrajani et al. 2017): D, 5 steps
  per G step, minimises D(fake) - D(real) + 10 (|grad D(x_mix)| - 1)^2, G minimises -D(fake).
Adam with betas (0.5, 0.999), as both papers use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from runtime.errors import ModelError

LOSSES = ("ns", "wgan-gp")


@dataclass(frozen=True)
class AdversarialSettings:
    critic: str
    steps: int = 2000
    batch: int = 256
    lr: float = 2e-4
    loss: str = "ns"
    penalty: float = 10.0
    seed: int = 1

    @property
    def critic_steps(self) -> int:
        return 5 if self.loss == "wgan-gp" else 1


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
        self.opt_d = torch.optim.Adam(critic, lr=settings.lr, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(gens, lr=settings.lr, betas=(0.5, 0.999))
        self.batch = min(settings.batch, int(self.real.shape[0]))
        self.state = AdversarialState()

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        w = self.params[self.settings.critic]
        return self.model.call_net(self.model.data, self.settings.critic, w, x)[..., 0]

    def fake(self, n: int) -> torch.Tensor:
        """n rows drawn by the model's sampler at the current generator weights."""
        data = self.model.data.replaced({self.size: n})
        return self.model.sample_prior(data, (), self.params)[self.name]

    def _real(self) -> torch.Tensor:
        idx = torch.randperm(int(self.real.shape[0]))[:self.batch].to(self.real.device)
        return self.real.index_select(0, idx)

    def _critic_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.settings.loss == "ns":
            return F.softplus(-self.critic(real)).mean() + F.softplus(self.critic(fake)).mean()
        mix = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype,
                         device=real.device)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(between).sum(), between, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return self.critic(fake).mean() - self.critic(real).mean() + \
            self.settings.penalty * penalty

    def step(self) -> float:
        for _ in range(self.settings.critic_steps):
            self.opt_d.zero_grad()
            loss_d = self._critic_loss(self._real(), self.fake(self.batch).detach())
            loss_d.backward()
            self.opt_d.step()
        self.opt_g.zero_grad()
        score = self.critic(self.fake(self.batch))
        loss_g = F.softplus(-score).mean() if self.settings.loss == "ns" else -score.mean()
        loss_g.backward()
        g, d = float(loss_g.detach()), float(loss_d.detach())
        if not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise ModelError(f"adversarial training became non-finite at step "
                             f"{self.state.step + 1} (generator loss {g}, critic loss {d}); "
                             "try a smaller --lr")
        self.opt_g.step()
        self.state.step += 1
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
        """The fitted weights as the model's unconstrained vector, [1, 1, dim]."""
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
             "lr": s.lr}
    theta = trainer.theta()
    return inference_data(trainer.model, theta,
                          {"lp": torch.full(theta.shape[:2], float("nan"))}, attrs, "never")
