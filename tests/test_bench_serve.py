"""``bench/serve.py`` run tiny, as a process: both servers answer, the table comes out, and no
request fails while ``champion`` moves (the benchmark itself is ``make bench-serve``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import REPO

pytestmark = pytest.mark.slow


def test_a_tiny_serving_benchmark_prints_both_servers_and_no_failures():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.serve", "--seconds", "0.5", "--max-requests", "40",
         "--swaps", "2", "--swap-every", "1.5", "--poll-seconds", "0.3", "--trees", "5"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    load = [line for line in lines if line.startswith("| sweepflow serve") and "|" in line]
    theirs = [line for line in lines if line.startswith("| mlflow models serve")]
    assert len(load) == 5 and len(theirs) == 5  # 4 load cells + 1 swap row each

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    for line in load[:4] + theirs[:4]:  # server, rows, clients, req/s, p50, p99, failed
        assert cells(line)[6] == "0", line
    assert cells(theirs[4])[3] == "0"
    ours_swap = cells(load[4])
    assert ours_swap[3] == "0"  # failed requests during the alias moves
    assert ours_swap[5] == "0"  # every move was seen
    assert float(ours_swap[4].split("/")[0]) < 10
