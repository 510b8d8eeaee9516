"""Keep freed memory in the process for the next request, instead of handing it back.

glibc serves every allocation over its mmap threshold (128 KiB to start with)
with a fresh mmap() and unmaps it on free, and trims the top of the heap past
128 KiB: so every request touches its arrays' pages for the first time again,
and each first touch is a page fault.  On these machines (virtual machines that
report freed pages to the host) a fault is expensive: measured in one process
on the large benchmark request (784-512-512-10, batch 1024, base64), the whole
request took 168 ms with glibc's defaults and 119 ms with this, and the core
alone 113 ms and 94 ms.

The price is memory: a worker keeps up to ``TRIM_THRESHOLD`` bytes of freed heap
after a large request.  Arrays up to ``MMAP_THRESHOLD`` (the largest one a
request within the default limits makes is 32 MB) come from the heap.

A worker's threads share one arena (``M_ARENA_MAX``): they compute one at a time
(service/worker/), and glibc would otherwise give each thread an arena of its
own that keeps its own freed memory, up to eight per core.
"""

from __future__ import annotations

import ctypes

MMAP_THRESHOLD = 64 * 2**20
TRIM_THRESHOLD = 256 * 2**20
# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, one arena for all threads; False where the
    C library is not glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        and mallopt(_M_ARENA_MAX, 1)
    )
