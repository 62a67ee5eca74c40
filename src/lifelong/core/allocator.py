"""Keeping freed memory in the process: CPU tensors of a training step reuse the pages of the last
step's instead of page-faulting fresh ones.

glibc's malloc serves blocks above a threshold it raises as they are freed with fresh `mmap`s, and
returns free memory at the top of its heap to the OS; a step that allocates and frees the same
megabytes every time then takes thousands of page faults per step (two microseconds each on a
VM). `keep_freed_memory` fixes both thresholds, as CPU tuning guides do with jemalloc or tcmalloc.
The `lifelong` command and the benchmarks call it; the library itself never changes the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (64-bit): blocks above it still come from mmap
TRIM_THRESHOLD = 512 * 2**20  # free memory at the heap's top is returned to the OS above this


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve blocks up to 32 MiB from its heap and keep up to 512 MiB of freed
    memory for reuse; False (nothing changed) where the C library has no `mallopt` (not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
