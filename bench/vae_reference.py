"""A hand-written PyTorch VAE with the architecture of examples/vae.bgm: the reference
that tests/test_svi.py compares bgm's held-out ELBO with, and bench/vae_bench.py its
step time.

Same choices as bgm's SVI: encoder MLP(D, 128, 2L) and decoder MLP(L, 128, D) with ReLU,
torch.nn.Linear's initialisation, softplus scales, one reparameterised particle per step,
minibatches of a fresh permutation each epoch with the ELBO scaled by N / batch, Adam.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class Vae(nn.Module):
    def __init__(self, d: int, latent: int = 2, hidden: int = 128):
        super().__init__()
        self.latent = latent
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def elbo(self, x: torch.Tensor, particles: int = 1) -> torch.Tensor:
        """The ELBO of the rows x summed over rows, averaged over particles."""
        h = self.enc(x)
        loc, scale = h[:, :self.latent], nn.functional.softplus(h[:, self.latent:])
        eps = torch.randn((particles,) + loc.shape, dtype=x.dtype)
        z = loc + scale * eps
        logits = self.dec(z)
        log_px = -nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * eps ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
        return (log_px + log_pz - log_qz).sum(-1).mean()


def train(x: torch.Tensor, epochs: int, batch: int = 128, lr: float = 1e-3,
          seed: int = 1) -> Vae:
    torch.manual_seed(seed)
    model = Vae(x.shape[1]).to(x.dtype)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n - batch + 1, batch):
            rows = x[order[start:start + batch]]
            opt.zero_grad()
            loss = -model.elbo(rows) * (n / batch)
            loss.backward()
            opt.step()
    return model


def heldout_elbo(model: Vae, x: torch.Tensor, particles: int = 100) -> float:
    """The ELBO per held-out image."""
    with torch.no_grad():
        return float(model.elbo(x, particles)) / x.shape[0]
