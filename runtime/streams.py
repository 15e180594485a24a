"""One random stream per chain, keyed by the run's seed and the chain's index.

Why not one generator for all chains: a batched draw of [chains, dim] from one generator
gives chain 3 different numbers when the run has 4 chains or 64, or when the chains are
split over processes (issue 20). Here chain i always reads the stream of
(seed, i), whatever the chains beside it, so a chain's draws depend only on its own
trajectory and the shared adaptation.

The streams are torch Generators seeded by numpy's SeedSequence (which spreads
(seed, index) over the whole state space, so neighbouring seeds give unrelated streams).
Each chain's numbers are drawn in blocks (`BLOCK` iterations at a time), so a run of 64
chains makes 64 small generator calls per block instead of per iteration; the order a
chain consumes its stream in is fixed by the sampler, not by the batch.
"""
from __future__ import annotations

import numpy as np
import torch

BLOCK = 64


def chain_seed(seed: int, chain: int) -> int:
    """The 63-bit seed of chain `chain` (0-based) of a run seeded `seed`."""
    return keyed_seed(seed, chain)


def keyed_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for the stream of `key` in a run seeded `seed` (a chain's index; a
    process's number of ranks, rank and step: runtime/distributed.py)."""
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class ChainStreams:
    """Standard normal vectors and uniforms for each chain, from its own stream.

    A draw may be limited to some chains (`mask`): the others do not advance, so what a
    chain reads depends on its own trajectory only (NUTS draws for the chains still
    building their trees, however deep the other chains go)."""

    def __init__(self, seed: int, chains: list[int], dtype: torch.dtype,
                 device: torch.device | str = "cpu"):
        self.chains = list(chains)
        self.dtype, self.device = dtype, torch.device(device)
        self.generators = [torch.Generator().manual_seed(chain_seed(seed, c))
                           for c in self.chains]
        self._blocks: dict[int, torch.Tensor] = {}  # width (0: uniforms) -> [C, BLOCK, w]
        self._cursors: dict[int, np.ndarray] = {}  # width -> [C] next unread row
        self._everyone = np.ones(len(self.chains), dtype=bool)
        self._index = np.arange(len(self.chains))

    def normal(self, dim: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[chains, dim] independent N(0, 1): the next vector of each chain's stream
        (of the chains in `mask`; the others' rows are zeros)."""
        return self._next(dim, mask)

    def uniform(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[chains] independent U(0, 1): the next number of each chain's stream (of the
        chains in `mask`; the others get 0.5)."""
        return self._next(0, mask)[:, 0]

    def uniforms(self, width: int, mask: torch.Tensor | np.ndarray | None = None) -> np.ndarray:
        """[chains, width] independent U(0, 1) as a numpy array: the next row of each
        chain's stream of rows of `width` uniforms (of the chains in `mask`; the others
        get 0.5). A stream of its own, apart from `uniform`'s."""
        return self._next(-width, mask).numpy()

    def _next(self, width: int, mask: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        # Called at every leapfrog step of NUTS, so it keeps to a few numpy operations on
        # views of the blocks; a chain's block is refilled when it has read all of it.
        c = len(self.chains)
        # width > 0: normals; 0: uniforms one at a time; -k: rows of k uniforms
        normal, columns = width > 0, max(abs(width), 1)
        if width not in self._blocks:
            self._blocks[width] = torch.empty((c, BLOCK, columns), dtype=self.dtype)
            self._cursors[width] = np.full(c, BLOCK, dtype=np.int64)
        block, cursor = self._blocks[width], self._cursors[width]
        if mask is None:
            take = self._everyone
        elif isinstance(mask, torch.Tensor):
            take = mask.detach().cpu().numpy().reshape(c)
        else:
            take = np.asarray(mask).reshape(c)
        empty = take & (cursor == BLOCK)
        if empty.any():
            for i in np.flatnonzero(empty).tolist():
                g = self.generators[i]
                block[i] = torch.randn((BLOCK, columns), generator=g, dtype=self.dtype) \
                    if normal else torch.rand((BLOCK, columns), generator=g, dtype=self.dtype)
                cursor[i] = 0
        rows = block.numpy()[self._index, np.minimum(cursor, BLOCK - 1)]
        rows = np.where(take[:, None], rows, 0.0 if normal else 0.5).astype(rows.dtype)
        cursor += take
        out = torch.from_numpy(rows)
        return out if self.device.type == "cpu" else out.to(self.device)
