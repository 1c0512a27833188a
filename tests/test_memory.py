"""The allocator's arenas are capped (sweepflow.memory): threads share them instead of each
growing its own, and a user's MALLOC_ARENA_MAX is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sweepflow.memory import limit_malloc_arenas

# Eight threads allocate at once, then glibc's malloc_stats() lists one "Arena N:" per arena.
PROBE = """
import ctypes, ctypes.util, sys, threading
from sweepflow.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
if sys.argv[1] == "one":  # the command line; a client made later asks for the default
    assert limit_malloc_arenas(1)
    assert limit_malloc_arenas()
if sys.argv[1] == "raised":  # the command line, then a sweep of two trials at a time
    assert limit_malloc_arenas(1)
    assert limit_malloc_arenas(2)
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    blocks = [bytearray(200_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_stats()
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True
    )
    return done.stderr.count("Arena ")


def test_threads_share_the_capped_arenas():
    cap = max(2, os.cpu_count() or 2)
    limited = _arenas("limit")
    assert 1 <= limited <= cap
    if cap < 8:  # the default gives each of the 8 threads an arena of its own
        assert _arenas("default") > cap


def test_one_arena_is_kept_when_a_default_is_asked_later():
    assert _arenas("one") == 1


def test_a_sweep_raises_the_cap_to_its_trials_at_once():
    assert _arenas("raised") == min(2, os.cpu_count() or 2)


def test_a_users_malloc_arena_max_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


# Forty 2 MiB blocks, each followed by a 200 KiB one that stays (and keeps them apart), are
# freed: from the heap, their pages stay in the process between the blocks still in use; mapped
# apart, they go back at once.
HOLES = """
import ctypes, ctypes.util, sys
from sweepflow.memory import return_large_blocks
if sys.argv[1] == "return":
    assert return_large_blocks()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
first = libc.malloc(4 * 2**20)  # once freed, glibc's threshold rises past 2 MiB, unless held
ctypes.memset(first, 1, 4 * 2**20)
libc.free(first)
large, kept = [], []
for _ in range(40):
    large.append(libc.malloc(2 * 2**20))
    ctypes.memset(large[-1], 1, 2 * 2**20)
    kept.append(libc.malloc(200 * 1024))
before = rss_mib()
for block in large:
    libc.free(block)
print(before - rss_mib())
"""


def _given_back_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    env.pop("GLIBC_TUNABLES", None)
    done = subprocess.run(
        [sys.executable, "-c", HOLES, mode], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def test_large_blocks_go_back_to_the_system_when_freed():
    assert _given_back_mib("default") < 10  # the heap kept the 80 MiB
    assert _given_back_mib("return") > 70


def test_a_users_mmap_threshold_is_left_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    from sweepflow.memory import return_large_blocks

    assert return_large_blocks() is False
