"""Causal sequence nets over tokens 1..V (`GRU`, `Transformer`), as functions of one flat
weight vector, so their weights are coordinates of the model's unknowns like an MLP's.

A net reads a prefix x[1..m] and gives the logits of what comes next. Position 0 of its
input is a start token (BOS, index 0), so the empty prefix has logits too. With
`context=C`, the sequence is cut into windows of C tokens that the net reads one at a time:
the prefix of length m is read from the start of its window, window k = (m - 1) // C (the
first target of a window is predicted from the whole previous window, the next ones from
the part of their window before them). This is the model the log-density scores, the
one training fits (every window in one batched call: teacher forcing) and the one
sampling draws from (one incremental call per token: a GRU's hidden state or a
Transformer's key/value cache, reset at a window's end), so that memory stays bounded by
the window and generation is O(T).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from runtime.nets import single_weights

BOS = 0


@dataclass(frozen=True)
class SeqNet:
    """A declared sequence net: `GRU(vocab=V, dim=H, layers=1, context=128)` or
    `Transformer(vocab=V, dim=D, layers=2, heads=4, context=128)`."""

    kind: str  # gru | transformer
    vocab: int
    dim: int
    layers: int
    heads: int
    context: int

    def module(self) -> nn.Module:
        return _template(self)

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.module().parameters())

    def init(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(centre, half-width) of each weight's initial uniform draw, matching the
        variance of torch.nn's defaults: 1/sqrt(fan-in) for matrices and biases,
        sqrt(3) for embeddings (N(0, 1)), and LayerNorm at exactly (1, 0)."""
        centres, scales = [], []
        for name, p in self.module().named_parameters():
            k = p.numel()
            centre, scale = 0.0, 0.0
            if "emb" in name:
                scale = math.sqrt(3.0) if self.kind == "gru" else 0.02 * math.sqrt(3.0)
            elif ".ln" in name or name.startswith("ln"):
                centre = 1.0 if name.endswith("weight") else 0.0
            elif self.kind == "gru" and name.startswith("rnn."):
                scale = 1.0 / math.sqrt(self.dim)
            else:
                fan_in = p.shape[-1] if p.dim() == 2 else self._fan_in(name)
                scale = 1.0 / math.sqrt(fan_in)
            centres.append(torch.full((k,), centre, dtype=torch.float64))
            scales.append(torch.full((k,), scale, dtype=torch.float64))
        return torch.cat(centres), torch.cat(scales)

    def _fan_in(self, bias_name: str) -> int:
        weight = dict(self.module().named_parameters())[bias_name[:-len("bias")] + "weight"]
        return int(weight.shape[-1])


def seqnet(kind: str, vocab: int, dim: int, layers: int = 1, heads: int = 1,
           context: int = 128) -> SeqNet:
    return SeqNet(kind, int(vocab), int(dim), int(layers), int(heads), int(context))


def seqnet_latent(name: str, spec: SeqNet) -> Any:
    """The net's weights as one unknown (a point parameter) with torch-like initial draws."""
    from runtime.model import Latent  # noqa: PLC0415
    centre, scale = spec.init()
    return Latent(name, (spec.size,), "net", init_scale=scale, init_centre=centre)


@functools.lru_cache(maxsize=32)
def _template(spec: SeqNet) -> nn.Module:
    with torch.device("meta"):
        return _GruLM(spec) if spec.kind == "gru" else _TransformerLM(spec)


class _GruLM(nn.Module):
    def __init__(self, spec: SeqNet):
        super().__init__()
        self.emb = nn.Embedding(spec.vocab + 1, spec.dim)
        self.rnn = nn.GRU(spec.dim, spec.dim, spec.layers, batch_first=True)
        self.head = nn.Linear(spec.dim, spec.vocab)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        h, state = self.rnn(self.emb(tokens), state)
        return self.head(h), state


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, n, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:  # earlier positions of this window: all visible
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif n == 1:
            a = F.scaled_dot_product_attention(q, k, v)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=_tail_mask(n, k.shape[2], x))
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, (k, v)


def _tail_mask(n: int, total: int, like: torch.Tensor) -> torch.Tensor:
    """Causal mask of the last n queries over all `total` keys."""
    rows = torch.arange(total - n, total, device=like.device).unsqueeze(1)
    return torch.arange(total, device=like.device).unsqueeze(0) <= rows


class _TransformerLM(nn.Module):
    def __init__(self, spec: SeqNet):
        super().__init__()
        if spec.dim % spec.heads:
            raise ValueError("dim must be a multiple of heads")
        self.emb = nn.Embedding(spec.vocab + 1, spec.dim)
        self.pos_emb = nn.Embedding(spec.context + 1, spec.dim)
        self.blocks = nn.ModuleList(_Block(spec.dim, spec.heads) for _ in range(spec.layers))
        self.ln = nn.LayerNorm(spec.dim)
        self.head = nn.Linear(spec.dim, spec.vocab)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        start = 0 if state is None else int(state[0][0].shape[2])
        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.emb(tokens) + self.pos_emb(pos)
        caches = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if state is None else state[i])
            caches.append(kv)
        return self.head(self.ln(x)), caches


# ---- flat weights --------------------------------------------------------------------------

def _weights(spec: SeqNet, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The module's parameters as views of w, made by one split (whose backward is one
    concatenation, where a slice per parameter would each fill a full-size gradient)."""
    named = list(spec.module().named_parameters())
    parts = w.split([p.numel() for _, p in named])
    return {name: part.view(p.shape) for (name, p), part in zip(named, parts, strict=True)}


def _call(spec: SeqNet, w: torch.Tensor, tokens: torch.Tensor, state: Any = None) -> Any:
    return torch.func.functional_call(spec.module(), _weights(spec, w), (tokens, state))


# ---- teacher forcing -----------------------------------------------------------------------

def window(m: int, context: int) -> int:
    """The window that reads the prefix of length m (window 0 also reads the empty one)."""
    return max(m - 1, 0) // context


def window_of(m: torch.Tensor, context: int) -> torch.Tensor:
    """`window` of each prefix length in m."""
    return (m - 1).clamp(min=0) // context


@dataclass(frozen=True)
class Windows:
    """The prefixes of a causal factor (lengths first .. first + items - 1) and how many
    context windows they fall in: what a minibatch over the sequence draws from."""

    first: int
    items: int
    context: int

    @property
    def count(self) -> int:
        if self.items <= 0:
            return 0
        return window(self.first + self.items - 1, self.context) + 1


def iterations_in(windows: torch.Tensor, first: int, count: int, context: int) -> torch.Tensor:
    """The iterations (0-based) whose prefixes fall in the given windows."""
    m = torch.arange(first, first + count)
    return torch.nonzero(torch.isin(window_of(m, context), windows.cpu())).reshape(-1)


def pick(x: Any, select: torch.Tensor | None, dim_from_end: int) -> Any:
    """x at the kept iterations of a causal factor's loop (its dim `dim_from_end` dims
    before the last + 1); x itself when every iteration is kept."""
    if select is None:
        return x
    x = torch.as_tensor(x)
    return x.index_select(x.dim() - 1 - dim_from_end, select.to(x.device))


def causal(w: torch.Tensor, spec: SeqNet, seq: Any, first: int, count: int,
           select: torch.Tensor | None = None) -> torch.Tensor:
    """The logits after each prefix seq[1..m], m = first .. first + count - 1 (or those of
    the iterations `select`), from one call of the net over the windows they fall in.
    seq holds the tokens 1..V; the result is [batch..., count, V] for w [batch..., P].

    seq [docs..., L] holds several documents (`x[d, 1..t-1]` inside `for d`): each is
    read from its own start, so no window crosses from one document into the next, and
    the result is [batch..., docs..., count, V], all documents in the same net call."""
    w1, batch = single_weights(w)
    seq = torch.as_tensor(seq, device=w.device).long()
    docs = tuple(seq.shape[:-1])
    seq = seq.reshape(-1, seq.shape[-1] if seq.dim() else 0) if docs else seq.reshape(1, -1)
    c = spec.context
    m = torch.arange(first, first + count, device=w.device)
    if select is not None:
        m = m[select.to(w.device)]
    k = window_of(m, c)
    if select is None:  # every window from the first to the last prefix's
        used = torch.arange(window(first, c), window(first + count - 1, c) + 1,
                            device=w.device)
        slot = k - used[0]
    else:
        used, slot = torch.unique(k, return_inverse=True)
    starts = used * c
    idx = starts.unsqueeze(1) + torch.arange(c, device=w.device)  # [windows, c]
    length = seq.shape[-1]
    if length:
        tokens = torch.where(idx < length, seq[:, idx.clamp(max=length - 1)],
                             torch.full_like(idx, BOS))  # [docs, windows, c]
    else:
        tokens = torch.zeros((seq.shape[0],) + tuple(idx.shape), dtype=torch.long,
                             device=w.device)
    tokens = torch.cat([torch.full_like(tokens[..., :1], BOS), tokens], dim=-1)
    n_docs, n_windows = tokens.shape[0], tokens.shape[1]
    logits, _ = _call(spec, w1, tokens.reshape(n_docs * n_windows, c + 1))
    flat = logits.reshape(n_docs, n_windows * (c + 1), spec.vocab)
    out = flat[:, slot * (c + 1) + (m - starts[slot])]  # [docs, count, V]
    out = out.reshape(*docs, *out.shape[1:]) if docs else out[0]
    return out.expand(*batch, *out.shape) if batch else out


# ---- incremental sampling ------------------------------------------------------------------

class Incremental:
    """Step-by-step logits for a batch of sequences being drawn: each `logits` call feeds
    the net only the positions it has not read (one token per generated token), keeping a
    GRU's hidden state or a Transformer's key/value cache, reset at each window's end."""

    calls = 0  # net invocations, over all instances (a test counts them)

    def __init__(self, w: torch.Tensor, spec: SeqNet, shape: tuple[int, ...]):
        self.w, _ = single_weights(w)
        self.spec = spec
        self.shape = tuple(shape)
        self.batch = math.prod(self.shape)
        self.window = -1
        self.read = 0  # positions of the current window fed (BOS included)
        self.state: Any = None

    def logits(self, steps: Any, lo: int, hi: int) -> torch.Tensor:
        """Logits [shape..., V] after the prefix steps[lo..hi] (1-based, inclusive)."""
        c = self.spec.context
        m = max(hi - lo + 1, 0)
        k = window(m, c)
        if k != self.window:
            self.window, self.read, self.state = k, 0, None
        have = self.read  # positions 0 (BOS) .. have - 1 are in the state
        want = m - k * c + 1  # BOS + the window's tokens of the prefix
        new = []
        for p in range(have, want):
            if p == 0:
                new.append(torch.full((self.batch,), BOS, dtype=torch.long, device=self.w.device))
            else:
                tok = torch.as_tensor(steps[lo - 1 + k * c + p], device=self.w.device)
                new.append(tok.long().expand(self.shape).reshape(-1))
        if not new:
            raise RuntimeError("incremental logits asked twice for one prefix")
        Incremental.calls += 1
        out, self.state = _call(self.spec, self.w, torch.stack(new, dim=1), self.state)
        self.read = want
        return out[:, -1].reshape(*self.shape, self.spec.vocab)
