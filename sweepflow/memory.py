"""How the process's C allocator keeps memory: few arenas, so what one thread frees another reuses.

glibc gives each new thread an arena of its own, up to 8 per core. A sweep runs its trials on
Prefect's task threads (and scikit-learn's on joblib's), not on the thread that loaded the data,
so each arena grows its own high-water mark: a 4-trial sweep at 165k rows peaked at 744 MiB, and
at 652 MiB with two arenas. A bare Optuna loop with one job never meets this: it fits on the
thread that loaded the data. Fewer arenas can mean more waiting on the allocator's lock; on 2
cores the benchmarks could not tell it from their noise (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc's mallopt parameter for the most arenas (malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas() -> bool:
    """Cap glibc's arenas at the machine's cores (at least 2). Returns whether it was set.

    A no-op off Linux/glibc, and when the user chose a value (``MALLOC_ARENA_MAX``, which glibc
    reads at start-up). Arenas made before the call stay; later threads share the capped set.
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_ARENA_MAX, max(2, os.cpu_count() or 2)))
