"""Keep freed memory in the process, so that large arrays reuse pages already mapped.

A classify call allocates and frees a few hundred MB of NumPy arrays (the padded feature rows, the
per-chunk outputs, the probability columns, the tables). By default glibc maps every block above its
mmap threshold (128 KiB, rising with use to at most 32 MiB) on its own and hands it back to the kernel
when freed (``munmap``), and trims the heap's free top, so the next large array
faults all its pages in again, each one zeroed. On a virtual machine whose host takes back the guest's
free memory (free page reporting) that first touch costs far more than a zeroed page, and the classify
stage's time swings with it (benchmarks/README.md shows the classify stage with and without).

:func:`keep_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (every allocation from the heap) and
``M_TRIM_THRESHOLD`` to 2 GiB (the heap's free top stays mapped), for this process only. The price is
that the process keeps its peak memory until it exits — right for a command that classifies a
catalogue and ends, which is where ``xsift`` calls it; Dask workers do not (their memory manager
expects freed memory to be returned). Set ``XSIFT_KEEP_FREED_MEMORY=0`` to leave malloc as it is.
Elsewhere than glibc on Linux it does nothing and says so.
"""
from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = (1 << 31) - 1        # mallopt takes a C int: 2 GiB


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory mapped in this process; True if it now does.

    False (and no change) where ``XSIFT_KEEP_FREED_MEMORY=0``, off Linux, or without glibc's ``mallopt``.
    """
    if os.environ.get("XSIFT_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # glibc only: musl's mallopt is a no-op, and it has no gnu_get_libc_version
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
