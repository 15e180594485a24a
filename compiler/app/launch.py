"""`bgmc fit ... --nproc P`: the same command on P processes of this machine, started by
torchrun's own launcher (`torch.distributed.run`, `--standalone`: a rendezvous on a free
local port), so that `--nproc P` and `torchrun --nproc-per-node P -m compiler.cli fit ...`
are the same run. Several machines: torchrun directly (docs/distributed.md).

The processes inherit this one's standard streams; rank 0 alone prints (cli.py silences
the others). When a process fails, its message has been printed already: the launcher's
own error report (a traceback of the agent) is not shown, and the exit code is the
failing process's.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from runtime.errors import ModelError

ENTRY = "compiler.cli"


def under_launcher() -> bool:
    """Whether this process is one of a group torchrun started (it must not launch more)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank() -> int:
    """This process's rank in torchrun's group (0 when it is not in one)."""
    raw = os.environ.get("RANK", "0")
    return int(raw) if raw.isdigit() else 0


def bug_stream() -> TextIO:
    """Where an internal error is reported: stderr, also on the ranks other than 0 (whose
    stderr is otherwise silenced), since a bug may strike one process alone."""
    return sys.__stderr__ if rank() > 0 and sys.__stderr__ is not None else sys.stderr


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is the process group's report that another process of the run went
    away (killed, or failed first): this process did nothing wrong, and is no bug."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return False
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(exc)
    return isinstance(exc, backend_error) or isinstance(exc, RuntimeError) and \
        any(word in text for word in ("gloo", "NCCL", "Connection reset", "Connection closed"))


def leave_group() -> None:
    """Leave torchrun's process group at the end of a command, if this process joined one
    (torch asks for it: a group left to the interpreter's exit is reported as a leak)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def without_nproc(argv: list[str]) -> list[str]:
    """The command line with its --nproc option taken out (both spellings)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(argv: list[str], nproc: int, batch: int | None) -> int:
    """Run `bgmc <argv>` (without --nproc) on nproc local processes; their exit code."""
    if batch is not None and batch < nproc:
        raise ModelError(f"--batch {batch} is smaller than --nproc {nproc}: every process "
                         f"needs rows of each minibatch; use --batch {nproc} or more")
    import torch.distributed.run as torchrun  # noqa: PLC0415 - only when launching
    from torch.distributed.elastic.multiprocessing.errors import (  # noqa: PLC0415
        ChildFailedError,
    )
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its own reports
    # the machine's cores shared among the processes (torchrun would set 1, and say so)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}",
                                  "--module", ENTRY, *without_nproc(argv)])
    try:
        torchrun.run(config)
    except ChildFailedError as exc:
        which, first = exc.get_first_failure()  # the cause; the others were stopped
        if first.exitcode < 0:  # killed (by the kernel, out of memory?): it said nothing
            print(f"error: process {which} of {nproc} was killed by signal "
                  f"{-first.exitcode}", file=sys.stderr)
            return 1
        return first.exitcode
    return 0
