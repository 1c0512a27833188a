"""The benchmark's whole-command variant at a tiny size, so it cannot rot: the ``sweepflow``
console script, timed from spawn to exit, against the bare loop's whole process."""

from __future__ import annotations

import pytest

from bench import run

pytestmark = pytest.mark.slow


def test_the_whole_command_is_timed_from_spawn_to_exit(tmp_path, capsys):
    summary = run.main(
        [
            "--rows",
            "300",
            "--trials",
            "2",
            "--no-large",
            "--no-warm-up",
            "--variants",
            "bare-p1,command-p1",
            "--out",
            str(tmp_path),
        ]
    )

    rows = summary["300 rows"]["rows"]
    bare, command = rows["bare-p1"], rows["command-p1"]
    # The console script ran the very trials of the bare loop (read back from its journal).
    assert command["trials"] == 2 and command["same_trials_as_bare"]
    for row in (bare, command):
        assert row["whole"] >= row["to_first"] + row["steady"] > 0
        assert row["after_last"] >= 0
    assert command["whole_ratio"] == pytest.approx(command["whole"] / bare["whole"], rel=1e-6)
    # What is only seen inside a worker is left out for a command, not guessed.
    assert command["imports"] is None and command["growth_mb"] is None
    assert "whole process ≤ 1.25x bare (p1): command-p1" in capsys.readouterr().out
