"""Several processes on torch.distributed: the process group, who this rank is, shards of a
minibatch, gradients summed over ranks, results gathered on rank 0.

bgm runs on torch's own machinery: torchrun (or `bgmc fit --nproc P`, which starts
torchrun's launcher) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and
`World.from_env` joins the group with `init_process_group("env://")`: gloo on CPUs, NCCL
on GPUs. Without those variables, or with WORLD_SIZE=1, a run is one process and nothing
here does anything (the one-process code path is unchanged, bit for bit).

Data parallelism (runtime/svi.py, runtime/adversarial.py): every rank draws the same
global minibatch from the same seeded random stream, takes its rows r::P, and weights its
loss by its share of the batch, B_r / B, so that the sum over ranks of the local losses is
the loss of the global batch; gradients are then summed with one `all_reduce` of a flat
buffer. The parameters here are flat weight vectors, not `torch.nn.Module`s, so
`DistributedDataParallel` (which wraps a module and hooks its buckets) does not fit; one
explicit all-reduce per step is the same communication. Reparameterisation noise comes
from a stream keyed by (seed, number of ranks, rank, step), forked off the global one so
that the global stream (the minibatch order, which a checkpoint holds) is the same on
every rank and independent of the number of ranks.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from runtime.errors import ModelError
from runtime.streams import keyed_seed

ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes files, checkpoints and the progress bar."""
        return self.rank == 0

    @staticmethod
    def current() -> World:
        """The group this process has joined (one process when none)."""
        if dist.is_available() and dist.is_initialized():
            return World(dist.get_rank(), dist.get_world_size())
        return World()

    @staticmethod
    def from_env(device: torch.device) -> World:
        """Join the process group torchrun describes in the environment (once); one
        process when it describes none or a group of one."""
        if dist.is_available() and dist.is_initialized():
            return World.current()
        size = _env_int("WORLD_SIZE", 1)
        if size <= 1:
            return World()
        missing = [k for k in ENV if k not in os.environ]
        if missing:
            raise ModelError(f"WORLD_SIZE={size} but {missing[0]} is not set: start the "
                             "processes with torchrun (or bgmc fit --nproc P)")
        if device.type == "cuda":  # one GPU per process on each machine
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method="env://")
        return World.current()

    # ---- minibatches
    def shard(self, idx: torch.Tensor | None) -> torch.Tensor | None:
        """This rank's rows of a global minibatch: every P-th, starting at the rank."""
        if idx is None or not self.distributed:
            return idx
        return idx[self.rank::self.size]

    def share(self, idx: torch.Tensor | None) -> float:
        """This rank's weight B_r / B: the local losses, so weighted, sum to the global
        batch's (each of them is scaled for its own B_r rows); 1 / P without a batch,
        when every rank computes the same full loss."""
        if not self.distributed:
            return 1.0
        if idx is None:
            return 1.0 / self.size
        return len(range(self.rank, int(idx.numel()), self.size)) / int(idx.numel())

    def chains(self, chains: int) -> range:
        """This rank's chains, a contiguous block of nearly equal size (the chains are
        indexed globally: each keeps its own random stream, runtime/streams.py)."""
        if chains < self.size:
            raise ModelError(f"--chains {chains} is fewer than the number of processes "
                             f"{self.size}: every process needs a chain; use --chains "
                             f"{self.size} or more, or fewer processes")
        return range(chains * self.rank // self.size, chains * (self.rank + 1) // self.size)

    def check_batch(self, batch: int | None, flag: str = "--batch") -> None:
        """Refuse more ranks than rows in a minibatch (a rank would have none)."""
        if self.distributed and batch is not None and batch < self.size:
            raise ModelError(f"{flag} {batch} is smaller than the number of processes "
                             f"{self.size}: every process needs rows of each minibatch; "
                             f"use {flag} {self.size} or more, or fewer processes")

    # ---- random streams
    def noise(self, seed: int, step: int, device: torch.device) -> Any:
        """A block whose random draws come from this rank's stream for `step` (a count
        that differs between the blocks of a run: reproducible
        for a seed and a number of ranks); the global stream is left as it was. One
        process keeps drawing from the global stream, as it always has."""
        if not self.distributed:
            return contextlib.nullcontext()
        return _forked(keyed_seed(seed, self.size, self.rank, step), device)

    # ---- communication
    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum `tensors` over the ranks in place, with one all-reduce of a flat buffer."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        at = 0
        for t in tensors:
            t.copy_(flat[at:at + t.numel()].view_as(t))
            at += t.numel()

    def summed(self, params: list[torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        """After the backward pass of this rank's weighted loss `value`: the gradients of
        `params` summed over the ranks in place, and the global loss (the sum of the
        ranks' values), the same on every rank."""
        total = value.detach().reshape(1).clone()
        if not self.distributed:
            return total[0]
        for p in params:
            if p.grad is None:  # a rank whose shard does not reach p still takes part
                p.grad = torch.zeros_like(p)
        self.sum_([p.grad for p in params] + [total])
        return total[0]

    def all_chains(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's x [C_r, ...] joined along the chains in rank order, on every rank
        (an adaptation shared by all chains computes on them all, in the order one process
        would: its sums are then the same to the last bit)."""
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(self.size)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
        counts = [int(n) for n in sizes]
        wire = x.to(torch.uint8) if x.dtype == torch.bool else x  # gloo sends no bool
        padded = torch.zeros((max(counts), *x.shape[1:]), dtype=wire.dtype, device=x.device)
        padded[:x.shape[0]] = wire
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]).to(x.dtype)

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0, in rank order (None on the other ranks)."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.writer else None
        dist.gather_object(obj, out, dst=0)
        return out

    def joined(self, part: Any, shared: tuple[str, ...] = ()) -> Any:
        """On rank 0, the ranks' parts (tensors, dicts and dataclasses of them, with a
        leading chain dimension) joined along that dimension in rank order; None on the
        other ranks. The dataclass fields named in `shared` are the same on every rank
        (an adaptation of all chains): rank 0's is kept. One process: `part` itself."""
        if not self.distributed:
            return part
        parts = self.gather(_to_cpu(part))
        return _concat(parts, shared) if parts is not None else None


def _to_cpu(x: Any) -> Any:
    """x with its tensors on the CPU (gather_object pickles them)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _to_cpu(getattr(x, f.name))
                                         for f in dataclasses.fields(x)})
    return x


def _concat(parts: list[Any], shared: tuple[str, ...] = ()) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, 0)
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(first, **{
            f.name: _concat([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(first) if f.name not in shared})
    return first  # None, or a setting every rank shares


@contextlib.contextmanager
def _forked(seed: int, device: torch.device) -> Iterator[None]:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise ModelError(f"the environment variable {name}={raw!r} is not a count")
    return int(raw)
