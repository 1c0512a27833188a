"""How the process's C allocator keeps memory: few arenas, so what one thread frees another
reuses, and large blocks given back to the system as soon as they are freed.

glibc gives each new thread an arena of its own, up to 8 per core. A sweep runs its trials on
Prefect's task threads (and scikit-learn's on joblib's), not on the thread that loaded the data,
so each arena grows its own high-water mark: a 4-trial sweep at 165k rows peaked at 744 MiB, and
at 652 MiB with two arenas. With one trial at a time, one arena is enough: the trial thread then
reuses what the main thread freed, as a bare Optuna loop with one job does on its only thread (a
2-trial sweep at 165k rows peaked 35 MiB lower with one arena than with two). A bare loop never
meets this: it fits on the thread that loaded the data. Fewer arenas can mean more waiting on
the allocator's lock; on 2 cores the benchmarks could not tell it from their noise
(docs/benchmarks.md).

glibc also serves a large block (above a threshold, 128 KiB at first) by mapping pages of its
own, which go back to the system when the block is freed; but each time such a block is freed
it raises the threshold to the block's size, up to 32 MiB. After the first few frames are freed,
a sweep's columns, folds and forests come from the heap instead, and what they leave behind
stays in the process between the pieces still in use. In a probe, a 3-trial sweep at 165k rows
grew 117-122 MiB once its data was loaded, and 71-79 MiB with the threshold held at 1 MiB, in
the same time (docs/benchmarks.md has the benchmark's figures). Blocks of 1 MiB or more are
few: mapping each one apart costs little next to filling it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Any

#: glibc's mallopt parameter for the most arenas (malloc.h).
_M_ARENA_MAX = -8

#: glibc's mallopt parameter for the size from which a block gets pages of its own (malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks of this size or more are mapped apart and given back when freed.
LARGE_BLOCK_BYTES = 1024**2

#: The cap set in this process, if any.
_cap: int | None = None
#: Whether :func:`return_large_blocks` is in place in this process.
_large_blocks_returned = False


def configure_allocator(threads: int | None = None) -> None:
    """Both settings of this module: :func:`limit_malloc_arenas` (``threads`` as there) and
    :func:`return_large_blocks`. Call it before the imports that start threads."""
    limit_malloc_arenas(threads)
    return_large_blocks()


def _user_chose(variable: str, tunable: str) -> bool:
    """Whether the user set this allocator parameter (as an environment variable or a glibc
    tunable, which glibc reads at start-up): their value is kept."""
    return variable in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", "")


@functools.cache
def _mallopt() -> Any:
    """glibc's ``mallopt``, or None (not Linux, or a C library without it, such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None


def return_large_blocks() -> bool:
    """Hold glibc's mmap threshold at :data:`LARGE_BLOCK_BYTES` (which also stops it from
    growing): every block that large is given back to the system when freed. Returns whether
    the setting is in place; a no-op when the user chose a threshold
    (``MALLOC_MMAP_THRESHOLD_`` or ``glibc.malloc.mmap_threshold``)."""
    global _large_blocks_returned
    if _user_chose("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"):
        return False
    if not _large_blocks_returned:
        mallopt = _mallopt()
        _large_blocks_returned = bool(
            mallopt is not None and mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)
        )
    return _large_blocks_returned


def limit_malloc_arenas(threads: int | None = None) -> bool:
    """Cap glibc's arenas. Returns whether a cap is in place.

    Args:
        threads: how many threads will do the heavy work at once (a sweep's ``parallel``; 1
            for the command line until it knows), when known: that many arenas, at most one
            per core. Unknown (None): one per core, at least 2, unless a cap is already set,
            which is then kept.

    A no-op off Linux/glibc, and when the user chose a value (``MALLOC_ARENA_MAX`` or
    ``glibc.malloc.arena_max``, which glibc reads at start-up). Arenas made before the call
    stay (a thread started by an import takes one: cap before importing); later threads share
    the capped set.
    """
    global _cap
    if _user_chose("MALLOC_ARENA_MAX", "glibc.malloc.arena_max"):
        return False
    if threads is None and _cap is not None:
        return True
    cores = os.cpu_count() or 2
    cap = max(2, cores) if threads is None else max(1, min(threads, cores))
    mallopt = _mallopt()
    if mallopt is None or not mallopt(_M_ARENA_MAX, cap):
        return False
    _cap = cap
    return True
