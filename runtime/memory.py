"""Keeping resident memory at what a fit holds, not what it once held.

glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MB),
after which blocks of a data-sized tensor ([chains, 10^6 rows] float64 is 32 MB) come
from the heap, and a heap fragmented by them is not given back: a fit of 10^6 rows that
holds ~600 MB peaked at 2.4 GB after evaluating 40 chunks of draws. A fixed threshold
(1 MB) keeps every large tensor in its own mapping, returned to the system when freed.
No library exposes mallopt, hence ctypes; elsewhere than glibc this does nothing."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
_THRESHOLD = 1 << 20


@functools.cache
def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; True when it was set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
