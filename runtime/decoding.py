"""How an autoregressive model's tokens are drawn when it generates text: temperature,
top-k and nucleus (top-p) truncation, and a prompt that fixes the first tokens (for a
forecast, the observed series is the prompt).

The settings apply to the draws of prefix-conditioned factors (`text[t] ~
Categorical(logits=lm(text[1..t-1]))`) inside `with decoding(...)`: the generated sampler
calls `draw_token`, which reads them. Everything else is drawn as usual. With the same
seed the same text comes out; temperature 0 is the greedy (argmax) continuation.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from runtime.errors import ModelError


@dataclass(frozen=True)
class Decoding:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    prompt: dict[str, Any] = field(default_factory=dict)  # variable -> tokens 1..P

    def check(self) -> None:
        if self.temperature < 0:
            raise ModelError(f"--temperature must be at least 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ModelError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ModelError(f"--top-p must be in (0, 1], got {self.top_p}")


_CURRENT: contextvars.ContextVar[Decoding | None] = contextvars.ContextVar("decoding",
                                                                           default=None)


@contextlib.contextmanager
def decoding(settings: Decoding) -> Iterator[None]:
    settings.check()
    token = _CURRENT.set(settings)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def fixed_length(name: str) -> int:
    """How many leading elements of `name` the current settings fix (its prompt)."""
    settings = _CURRENT.get()
    prompt = settings.prompt.get(name) if settings is not None else None
    return 0 if prompt is None else len(prompt)


def truncated_logits(logits: torch.Tensor, settings: Decoding) -> torch.Tensor:
    """Logits divided by the temperature, with tokens outside the top k, or outside the
    smallest set whose probability reaches top_p, set to -inf (at least one is kept)."""
    out = logits / settings.temperature
    if settings.top_k is not None and settings.top_k < out.shape[-1]:
        kth = out.topk(settings.top_k, dim=-1).values[..., -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if settings.top_p is not None and settings.top_p < 1:
        sorted_logits, order = out.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        drop = before >= settings.top_p
        out = out.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return out


def draw_token(d: Any, shape: tuple[int, ...], where: str, name: str, index: int) -> torch.Tensor:
    """The token at position `index` (1-based) of `name`: the prompt's, else a draw from
    the categorical `d` under the current decoding settings (values 1..K)."""
    settings = _CURRENT.get() or Decoding()
    prompt = settings.prompt.get(name)
    batch = torch.Size(shape[:len(shape) - len(d.event_shape)])
    logits = d.logits.expand(*batch, d.logits.shape[-1])
    if prompt is not None and index <= len(prompt):
        return torch.full(batch, int(prompt[index - 1]), dtype=torch.long, device=logits.device)
    if settings.temperature == 0:
        return logits.argmax(-1) + 1
    if settings.temperature == 1 and settings.top_k is None and settings.top_p is None:
        return d.expand(batch).sample()
    return torch.distributions.Categorical(logits=truncated_logits(logits, settings)).sample() + 1
