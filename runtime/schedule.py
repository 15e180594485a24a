"""Learning-rate schedules for the Adam-trained engines (SVI, adversarial training).

A schedule is a function of the step alone, not an object with state, so a run resumed
from a checkpoint continues it exactly (runtime/checkpoint.py keeps only the step).

- "constant": the base rate throughout (bgm's default before per-family defaults);
- "cosine": half a cosine from the base rate down to FLOOR of it over the run
  (Loshchilov and Hutter 2017, without restarts): large steps while the net finds the
  shape, small ones at the end so the last weights are not a snapshot of a noisy walk.
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")
FLOOR = 0.02  # the cosine schedule ends at 2% of the base rate, not at zero


def learning_rate(base: float, step: int, total: int, schedule: str) -> float:
    """The rate of step `step` (0-based) of `total`."""
    if schedule == "constant" or total <= 1:
        return base
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule '{schedule}'")
    done = min(step, total - 1) / (total - 1)
    return base * (FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * done)))


def set_rate(optimizer: object, rate: float) -> None:
    """Give every parameter group of a torch optimiser the rate `rate`."""
    for group in optimizer.param_groups:  # type: ignore[attr-defined]
        group["lr"] = rate
