"""An exponential moving average of weights (Polyak averaging), the standard for sampling
from a trained diffusion model (Ho et al. 2020 sample with an average of decay 0.9999;
Song and Ermon 2020 show it removes the colour shifts and blur of the last iterate).
The denoiser's last weights are one point of a noisy walk; their average over the last
few thousand steps is a better denoiser at every noise level.

After step t (1-based) the average moves towards the weights by 1 - decay_t, with the
warm-up decay_t = min(decay, (1 + t) / (10 + t)) (TensorFlow's ExponentialMovingAverage
with num_updates): early averages forget the random start quickly, so short runs are
averaged too instead of staying near their initial weights.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

DEFAULT_DECAY = 0.999


def decay_at(decay: float, step: int) -> float:
    """The decay used by the update after step `step` (1-based)."""
    return min(decay, (1 + step) / (10 + step))


class Ema:
    """Shadow copies of `params` (name -> tensor), updated after each optimiser step."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float = DEFAULT_DECAY):
        if not 0 < decay < 1:
            raise ValueError(f"an EMA decay is in (0, 1), not {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor], step: int) -> None:
        d = decay_at(self.decay, step)
        for k, v in params.items():
            self.shadow[k].lerp_(v.detach(), 1 - d)  # shadow = d shadow + (1 - d) v

    @contextlib.contextmanager
    def swapped(self, params: dict[str, torch.Tensor]) -> Iterator[None]:
        """Inside this block `params` hold the averages (in place), then their own values
        again: whatever reads the params (draws, the objective) reads the averages."""
        saved = {k: v.detach().clone() for k, v in params.items()}
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(self.shadow[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in params.items():
                    v.copy_(saved[k])
