"""Chains of discrete latents (z[t] depends on z[t-1]): exact sums, marginals, the most
likely path and posterior draws, all in log space and batched over leading dims.

A chain is given by its log potentials phi [..., T, K, K]: phi[t, j, k] is the log of
every factor at step t with z[t-1] = j and z[t] = k (transition and emission together);
at t = 0 there is no z[-1] and phi[0, j, k] does not depend on j (row 0 is used). Then
    log p(data | theta) = log sum_z exp(sum_t phi[t, z[t-1], z[t]]).
The sum is a product of T - 1 matrices in the (logsumexp, +) semiring, which is
associative: `log_likelihood` multiplies them pairwise in log2(T) rounds of batched
tensor operations (a parallel reduction) instead of T sequential steps, so a long chain
costs a few dozen kernel launches and autograd gives its gradient. Marginals (forward-
backward), Viterbi and forward-filtering backward-sampling run once per fit for the
output, as sequential loops over t vectorised over draws.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def log_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a ⊗ b)[i, k] = log sum_j exp(a[i, j] + b[j, k]), batched over leading dims.

    Computed as a matrix product of exponentials shifted by each row's and column's
    maximum (one BLAS call instead of a K^3 logsumexp); where that underflows to zero
    (entries more than ~700 nats apart, or structural zeros) it is recomputed exactly."""
    a_max = torch.nan_to_num(a.amax(-1, keepdim=True).detach(), neginf=0.0)
    b_max = torch.nan_to_num(b.amax(-2, keepdim=True).detach(), neginf=0.0)
    out = torch.log(torch.exp(a - a_max) @ torch.exp(b - b_max)) + a_max + b_max
    return fast_or_exact(out, lambda: _log_matmul_exact(a, b))


def fast_or_exact(fast: torch.Tensor, exact: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`fast` where it is finite, else the exact computation `exact()` (same shape).

    On the CPU, asking whether fast is finite everywhere is free, so exact() runs only
    when needed (and then gives every entry). On other devices asking would copy to the
    host and wait for the device inside the step loop, so exact() always runs and
    torch.where picks entry by entry: more arithmetic, no synchronisation."""
    finite = torch.isfinite(fast)
    if fast.device.type == "cpu":
        return fast if bool(finite.all()) else exact()
    return torch.where(finite, fast, exact())


def _log_matmul_exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(a.unsqueeze(-1) + b.unsqueeze(-3), dim=-2)


def chain_product(mats: torch.Tensor) -> torch.Tensor:
    """mats [..., L, K, K] -> their product in order, [..., K, K], by pairwise rounds."""
    while mats.shape[-3] > 1:
        if mats.shape[-3] % 2:  # carry the last one to the next round unchanged
            paired = log_matmul(mats[..., 0:-1:2, :, :], mats[..., 1::2, :, :])
            mats = torch.cat([paired, mats[..., -1:, :, :]], dim=-3)
        else:
            mats = log_matmul(mats[..., 0::2, :, :], mats[..., 1::2, :, :])
    return mats[..., 0, :, :]


def log_likelihood(phi: torch.Tensor) -> torch.Tensor:
    """log sum over all paths of exp(sum of potentials): [..., T, K, K] -> [...].

    The matrices are multiplied in probability space, each rescaled by its largest entry
    (kept as a log scale), so a round is one batched matrix product; entries more than
    ~700 nats below their matrix's largest underflow, which changes the sum by a
    relative 1e-300. If everything underflowed, the exact log-space product is used
    (fast_or_exact: without waiting for the device off the CPU)."""
    alpha = phi[..., 0, 0, :]
    if phi.shape[-3] == 1:
        return torch.logsumexp(alpha, -1)
    fast = _scaled_log_likelihood(alpha, phi[..., 1:, :, :])
    return fast_or_exact(fast, lambda: torch.logsumexp(
        alpha.unsqueeze(-1) + chain_product(phi[..., 1:, :, :]), dim=(-2, -1)))


def _scale(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The largest entry over `dims` (as a constant: the result does not depend on it)."""
    return torch.nan_to_num(x.amax(dim=dims, keepdim=True).detach(), neginf=0.0, posinf=0.0)


def _scaled_log_likelihood(alpha: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    c = _scale(rest, (-2, -1))
    mats = torch.exp(rest - c)
    log_scale = c.sum(dim=(-3, -2, -1))
    while mats.shape[-3] > 1:
        length, k = mats.shape[-3], mats.shape[-1]
        carry = mats[..., -1:, :, :] if length % 2 else None
        paired = (mats[..., :-1, :, :] if carry is not None else mats).reshape(
            *mats.shape[:-3], length // 2, 2, k, k)
        left, right = paired.unbind(-3)  # unbind, not strided slices: a cheap backward
        product = left @ right
        s = torch.nan_to_num(product.amax(dim=(-2, -1), keepdim=True).detach(), posinf=1.0)
        s = torch.where(s > 0, s, torch.ones_like(s))
        mats = product / s
        log_scale = log_scale + torch.log(s).sum(dim=(-3, -2, -1))
        if carry is not None:
            mats = torch.cat([mats, carry], dim=-3)
    a = _scale(alpha, (-1,))
    v = (torch.exp(alpha - a).unsqueeze(-2) @ mats[..., 0, :, :]).squeeze(-2)
    return torch.log(v.sum(-1)) + a.squeeze(-1) + log_scale


def _forward(phi: torch.Tensor) -> list[torch.Tensor]:
    """alpha[t][k] = log sum over z[0..t] with z[t] = k of the potentials up to t."""
    alphas = [phi[..., 0, 0, :]]
    for t in range(1, phi.shape[-3]):
        alphas.append(torch.logsumexp(alphas[-1].unsqueeze(-1) + phi[..., t, :, :], dim=-2))
    return alphas


def marginals(phi: torch.Tensor) -> torch.Tensor:
    """p(z[t] = k | data, theta) by forward-backward: [..., T, K]."""
    alphas = _forward(phi)
    beta = torch.zeros_like(alphas[-1])
    out = [alphas[-1] + beta]
    for t in range(phi.shape[-3] - 1, 0, -1):
        beta = torch.logsumexp(phi[..., t, :, :] + beta.unsqueeze(-2), dim=-1)
        out.append(alphas[t - 1] + beta)
    logs = torch.stack(out[::-1], dim=-2)
    return torch.softmax(logs, dim=-1)


def viterbi(phi: torch.Tensor, with_score: bool = False) -> Any:
    """The most likely path (max-product), as 0-based state indices [..., T] (and its
    log score, the sum of its potentials, when asked)."""
    score = phi[..., 0, 0, :]
    back = []
    for t in range(1, phi.shape[-3]):
        cand = score.unsqueeze(-1) + phi[..., t, :, :]  # [..., j, k]
        score, arg = cand.max(dim=-2)
        back.append(arg)
    best, state = score.max(-1)
    path = [state]
    for arg in reversed(back):
        state = arg.gather(-1, state.unsqueeze(-1)).squeeze(-1)
        path.append(state)
    states = torch.stack(path[::-1], dim=-1)
    return (states, best) if with_score else states


def sample_paths(phi: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draws from p(z | data, theta): forward filtering, backward sampling; [..., T]."""
    alphas = _forward(phi)

    def draw(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, -1)
        flat = probs.reshape(-1, probs.shape[-1]).cpu()
        return torch.multinomial(flat, 1, generator=generator).reshape(
            probs.shape[:-1]).to(probs.device)
    state = draw(alphas[-1])
    path = [state]
    for t in range(phi.shape[-3] - 1, 0, -1):
        # p(z[t-1] = j | z[t], data) ∝ alpha[t-1][j] exp(phi[t, j, z[t]])
        column = phi[..., t, :, :].gather(
            -1, state[..., None, None].expand(*state.shape, phi.shape[-2], 1)).squeeze(-1)
        state = draw(alphas[t - 1] + column)
        path.append(state)
    return torch.stack(path[::-1], dim=-1)
