"""A hand-written PyTorch character-level language model: the reference that
examples/charlm.bgm is checked and timed against (tests/test_lm.py, bench/charlm_bench.py).

The same model as the .bgm file: a pre-LayerNorm causal Transformer (token and position
embeddings, `layers` blocks of 4-head attention and a 4x GELU MLP, a final LayerNorm and a
linear head) reading non-overlapping windows of `context` characters after a start token;
trained by Adam on minibatches of windows drawn without replacement in each epoch, scored
by the mean negative log2-likelihood of every character after the first.

    python bench/charlm_reference.py --steps 1500   # held-out bits per character
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]


def load_tokens(path: Path) -> tuple[torch.Tensor, int]:
    """Token ids 1..V of a data file written as {"V", "text": {"alphabet", "text"}}."""
    data = json.loads(path.read_text())
    alphabet = data["text"]["alphabet"]
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}
    return torch.tensor([index[ch] for ch in data["text"]["text"]]), int(data["V"])


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        split = [z.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v)]
        a = F.scaled_dot_product_attention(*split, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 context: int = 64):
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(vocab + 1, dim)  # index 0: the start token
        self.pos = nn.Embedding(context + 1, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [B, C] of tokens 1..V -> logits [B, C, V] of each next token."""
        x = torch.cat([torch.zeros_like(windows[:, :1]), windows], dim=1)
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))[:, 1:]


def windows(tokens: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [K, C] and targets [K, C] (0 where the text has ended) of each window."""
    n = tokens.numel() - 1  # targets: every character after the first
    k = math.ceil(n / context)
    pad = torch.zeros(k * context + 1, dtype=torch.long)
    pad[:tokens.numel()] = tokens
    return pad[:-1].reshape(k, context), pad[1:].reshape(k, context)


def bits_per_char(model: CharTransformer, tokens: torch.Tensor) -> float:
    inputs, targets = windows(tokens, model.context)
    with torch.no_grad():
        logits = model(inputs)
    mask = targets > 0
    nll = F.cross_entropy(logits[mask], targets[mask] - 1, reduction="sum")
    return float(nll) / float(mask.sum()) / math.log(2)


def train(tokens: torch.Tensor, vocab: int, steps: int, batch: int = 32, lr: float = 3e-3,
          seed: int = 1, dim: int = 64, layers: int = 2, heads: int = 4,
          context: int = 64) -> CharTransformer:
    torch.manual_seed(seed)
    model = CharTransformer(vocab, dim, layers, heads, context)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, targets = windows(tokens, context)
    order, position = torch.randperm(len(inputs)), 0
    for _ in range(steps):
        if position + batch > len(inputs):
            order, position = torch.randperm(len(inputs)), 0
        idx = order[position:position + batch]
        position += batch
        logits, y = model(inputs[idx]), targets[idx]
        mask = y > 0
        loss = F.cross_entropy(logits[mask], y[mask] - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokens, vocab = load_tokens(ROOT / "examples" / "charlm.json")
    test, _ = load_tokens(ROOT / "examples" / "charlm_test.json")
    start = time.perf_counter()
    model = train(tokens, vocab, args.steps, seed=args.seed)
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s; held-out "
          f"{bits_per_char(model, test):.4f} bits per character")


if __name__ == "__main__":
    main()
