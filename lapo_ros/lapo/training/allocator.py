"""glibc's allocator for a training process: keep freed memory instead of refaulting it.

A training step allocates the same large activation and gradient buffers every step.
glibc serves blocks above its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and
returns them on ``free``, and trims the heap top above 128 KiB, so each step faults the
same memory in again page by page (about 1.4 M minor faults per batch-64 224x224 step,
some 11% of the step's CPU time as system time). ``keep_freed_memory`` serves every block
from the heap and never trims it: the process keeps its peak footprint and reuses it.
BENCHMARKS.md (seed_comparison) measures it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes: bytes free at the heap top


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap (no ``mmap``) and never return its top to the
    system; whether it was applied (False where the C library is not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
