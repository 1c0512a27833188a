"""How the process's C allocator keeps memory: few arenas, so what one thread frees another reuses.

glibc gives each new thread an arena of its own, up to 8 per core. A sweep runs its trials on
Prefect's task threads (and scikit-learn's on joblib's), not on the thread that loaded the data,
so each arena grows its own high-water mark: a 4-trial sweep at 165k rows peaked at 744 MiB, and
at 652 MiB with two arenas. With one trial at a time, one arena is enough: the trial thread then
reuses what the main thread freed, as a bare Optuna loop with one job does on its only thread (a
2-trial sweep at 165k rows peaked 35 MiB lower with one arena than with two). A bare loop never
meets this: it fits on the thread that loaded the data. Fewer arenas can mean more waiting on
the allocator's lock; on 2 cores the benchmarks could not tell it from their noise
(docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameter for the most arenas (malloc.h).
_M_ARENA_MAX = -8

#: The cap set in this process, if any.
_cap: int | None = None


def limit_malloc_arenas(threads: int | None = None) -> bool:
    """Cap glibc's arenas. Returns whether a cap is in place.

    Args:
        threads: how many threads will do the heavy work at once (a sweep's ``parallel``; 1
            for the command line until it knows), when known: that many arenas, at most one
            per core. Unknown (None): one per core, at least 2, unless a cap is already set,
            which is then kept.

    A no-op off Linux/glibc, and when the user chose a value (``MALLOC_ARENA_MAX``, which glibc
    reads at start-up). Arenas made before the call stay (a thread started by an import takes
    one: cap before importing); later threads share the capped set.
    """
    global _cap
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if threads is None and _cap is not None:
        return True
    cores = os.cpu_count() or 2
    cap = max(2, cores) if threads is None else max(1, min(threads, cores))
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    if not mallopt(_M_ARENA_MAX, cap):
        return False
    _cap = cap
    return True
