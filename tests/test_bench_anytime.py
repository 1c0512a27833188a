"""``bench/anytime.py`` at smoke size, so the script cannot rot (not a measurement)."""

from __future__ import annotations

import json

import pytest

from bench import anytime


@pytest.mark.slow
def test_quick_run_writes_the_table_and_the_plot(tmp_path):
    assert anytime.main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("| seed |")
    assert table.count("\n") == 3  # header, rule, one seed
    assert (tmp_path / "anytime.png").read_bytes().startswith(b"\x89PNG")
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"]
    assert run["bare"]["states"].get("COMPLETE", 0) >= 1
    assert run["ours"]["budget"] == pytest.approx(run["bare"]["wall"])
    assert run["verdict"]["bare_holdout"] > 0.5
    assert all(
        row["end"] <= run["ours"]["budget"]
        for row in run["ours"]["trials"]
        if row["state"] == "COMPLETE"
    )


def test_incumbents_are_the_improvements_in_time_order():
    result = {
        "trials": [
            {"state": "COMPLETE", "end": 3.0, "value": 0.80},
            {"state": "PRUNED", "end": 1.0, "value": None},
            {"state": "COMPLETE", "end": 2.0, "value": 0.85},
            {"state": "COMPLETE", "end": 4.0, "value": 0.90},
        ]
    }
    assert [row["value"] for row in anytime.incumbents(result)] == [0.85, 0.90]
