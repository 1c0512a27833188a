"""A newcomer's first sweeps: the console script on a fresh Prefect home, no Prefect server.

The test harness never starts from a fresh Prefect home, so it hid this: the temporary server
creates and migrates its database on its first start, which outlived Prefect's 20-second
start-up limit on 2 cores, and the sweep died. Here each run gets a home of its own, as a new
machine has, and the console must stay clean (no traceback, no library warning).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SWEEPFLOW = Path(sys.executable).parent / "sweepflow"
NOISE = ("Traceback", "Warning", "ERROR", "database is locked", "telemetry")


def newcomer_environment(home: Path) -> dict[str, str]:
    """The developer's environment less everything a newcomer has not set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MLFLOW_", "OPTUNA_", "SWEEPFLOW_"))
    }
    env["HOME"] = str(home)
    env["PREFECT_HOME"] = str(home / ".prefect")
    env["SWEEPFLOW_MLRUNS"] = str(home / "mlruns")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_first_sweep_on_a_fresh_prefect_home_succeeds_with_a_clean_console(tmp_path, attempt):
    home = tmp_path / f"newcomer-{attempt}"
    home.mkdir()
    result = subprocess.run(
        [str(SWEEPFLOW), "sweep", "--rows", "600", "--trials", "1", "--parallel", "1"],
        env=newcomer_environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert (home / ".prefect").is_dir(), "the run did not use the fresh Prefect home"
    assert "champion" in result.stdout
    for noise in NOISE:
        assert noise not in console, f"{noise!r} on the console:\n{console[-3000:]}"


def run_command(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SWEEPFLOW), *args],
        env=newcomer_environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean(result: subprocess.CompletedProcess, command: str) -> None:
    console = result.stdout + result.stderr
    assert result.returncode == 0, f"{command}: {console[-3000:]}"
    for noise in NOISE:
        assert noise not in console, f"{command}: {noise!r} on the console:\n{console[-3000:]}"


@pytest.mark.slow
def test_the_readme_commands_after_a_first_sweep_print_no_noise(tmp_path):
    """Score, promote and history, run directly as the docs say, on a fresh Prefect home."""
    home = tmp_path / "newcomer"
    home.mkdir()
    data = home / "customers.csv"
    assert_clean(run_command(home, "generate-data", "--out", str(data), "--rows", "700"), "data")
    sweep = ["sweep", "--data", str(data), "--trials", "2", "--parallel", "1", "--folds", "2"]
    assert_clean(run_command(home, *sweep), "sweep")
    assert_clean(run_command(home, *sweep, "--seed", "1"), "second sweep")
    scored = home / "scored.csv"
    assert_clean(run_command(home, "score", "--data", str(data), "--out", str(scored)), "score")
    assert scored.exists()
    assert_clean(run_command(home, "promote"), "promote")
    assert_clean(run_command(home, "history"), "history")
