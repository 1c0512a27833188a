"""The benchmark (``make bench``) at a tiny size, so it cannot rot: one bare run, one sweep."""

from __future__ import annotations

import json

import pytest

from bench import run

pytestmark = pytest.mark.slow


def test_the_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    summary = run.main(["--quick", "--variants", "bare-p1,sweep-p1", "--out", str(tmp_path)])

    rows = summary["300 rows"]["rows"]
    assert set(rows) == {"bare-p1", "sweep-p1"}
    bare, sweep = rows["bare-p1"], rows["sweep-p1"]
    for row in (bare, sweep):
        assert row["trials"] == 2
        assert row["steady"] > 0 and row["wall"] > row["steady"]
        assert row["peak_rss_mb"] > 50  # a Python process with pandas and scikit-learn
    # The same seed and space on one thread: the sweep ran exactly the bare loop's trials.
    assert sweep["same_trials_as_bare"]
    assert sweep["steady_ratio"] > 0 and sweep["overhead_ms"] is not None
    assert sweep["server"] > 0  # it started (and timed) a temporary Prefect server

    (folder,) = tmp_path.iterdir()
    saved = json.loads((folder / "results.json").read_text())
    assert saved["machine"]["nproc"] >= 1
    assert len(saved["measurements"]) == 2
    table = (folder / "table.md").read_text()
    assert "| 300 rows | sweep-p1 |" in table
    assert "steady state" in capsys.readouterr().out


def test_the_same_trials_run_at_one_and_two_at_once(tmp_path):
    summary = run.main(
        [
            "--quick",
            "--no-warm-up",
            "--same-trials",
            "--variants",
            "bare-p1,sweep-p1,sweep-p2",
            "--out",
            str(tmp_path),
        ]
    )

    part = summary["300 rows"]
    rows = part["rows"]
    assert part["speedup_same_trials"] is True
    assert part["speedup_sweep"] > 0
    for name in ("sweep-p1", "sweep-p2"):  # the enqueued points, every one run whole
        assert rows[name]["states"] == {"COMPLETE": 2}
    assert rows["sweep-p1"]["same_trials_as_bare"]
    (folder,) = tmp_path.iterdir()
    assert "the same trials" in (folder / "table.md").read_text()
